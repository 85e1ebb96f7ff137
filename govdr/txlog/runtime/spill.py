"""A transaction too large for memory goes to disk while its changes arrive.

The archiver holds a transaction's changes in memory until its COMMIT only while they stay
under ``DEFAULT_SPILL_BYTES``. Past that, the transaction becomes a segment of its own, written
while it streams: wal2json's BEGIN record already names the transaction's commit LSN, end LSN
and commit time, so every part line (about ``PART_BYTES`` of changes, see
:func:`govdr.txlog.runtime.archive.transaction_head`) is complete when it is cut, and the
segment writer hashes and appends it to the segment's temporary file in the archive directory
(the Lambda's EFS volume, which has room for any transaction). At COMMIT the last part and the
seal are written, and the file is fsynced and linked like any segment; only then is the
transaction acknowledged. Memory holds at most a few parts, whatever the transaction's size.

A run that ends before the COMMIT (kill -9, a timeout, a lost connection) leaves at most that
temporary file and nothing in the archive; the server redelivers the transaction, and the next
run removes such leftovers once it holds the slot (:func:`remove_leftovers`).
"""

from __future__ import annotations

import re
from pathlib import Path

# A transaction whose changes pass this many bytes is written to disk as it arrives.
DEFAULT_SPILL_BYTES = 4 * 1024 * 1024
# Bytes of changes per part line of such a transaction.
PART_BYTES = 1024 * 1024
# Temporary files of runs that died: ".<name>.<pid>.<8 hex>.tmp" (govdr.txlog.runtime.archive
# _NewFile). Never a segment, gap record or manifest, which are never dot-files.
LEFTOVER_RE = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


def remove_leftovers(directory: Path) -> list[str]:
    """Remove the temporary files of runs that died; return their names. Called only by a run
    that holds the slot (no other archiver is writing then). A link is never followed."""
    removed = []
    for path in directory.iterdir():
        if LEFTOVER_RE.match(path.name) and not path.is_symlink() and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return sorted(removed)


__all__ = ["DEFAULT_SPILL_BYTES", "PART_BYTES", "remove_leftovers"]
