"""Transaction-log archiver: logical decoding (wal2json) into segment files on EFS."""
