"""Run the archiver once from the command line (tests, benchmarks, operators).

``python -m runtime.txlog_archiver --dsn DSN --dir DIR [--slot NAME]`` drains the slot until it
has been idle for ``--idle`` seconds (or ``--max-seconds`` pass) and prints the run's figures
as JSON. Exit 2: the archive or the database refused (the message says which and how to fix).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from runtime.txlog_archiver.archive import Archive, ArchiveError, parse_lsn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.txlog_archiver", description=__doc__)
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    parser.add_argument("--dir", required=True, type=Path, help="archive directory")
    parser.add_argument("--slot", default="govdr_txlog")
    parser.add_argument("--idle", type=float, default=1.0, help="stop after this many idle seconds")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--batch", type=int, default=5000, help="transactions per segment")
    parser.add_argument(
        "--stop-lsn", default=None, help="stop once a commit ending at or after this LSN (X/Y)"
    )
    args = parser.parse_args(argv)

    import psycopg2
    import psycopg2.extras

    from runtime.txlog_archiver.archiver import Archiver

    archiver = Archiver(
        archive=Archive(args.dir),
        slot=args.slot,
        connect_sql=lambda: psycopg2.connect(args.dsn),
        connect_replication=lambda: psycopg2.connect(
            args.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
        ),
        batch_transactions=args.batch,
        idle_seconds=args.idle,
        deadline=time.monotonic() + args.max_seconds if args.max_seconds else None,
        stop_lsn=parse_lsn(args.stop_lsn) if args.stop_lsn else None,
    )
    try:
        stats = archiver.run()
    except ArchiveError as exc:
        print(f"txlog-archiver: {exc}", file=sys.stderr)
        return 2
    except psycopg2.Error as exc:
        print(f"txlog-archiver: database error: {str(exc).strip()}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
