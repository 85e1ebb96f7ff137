"""Run the archiver once from the command line (tests, benchmarks, operators).

``python -m govdr.txlog.runtime --dsn DSN --dir DIR --slot NAME (--kms-key KEY | --key-file
FILE) [--create-slot]`` drains the
slot until it has been idle for ``--idle`` seconds (or ``--max-seconds`` pass) and prints the
run's figures as JSON. The slot must exist unless ``--create-slot`` is given; a slot the server
invalidated (``max_slot_wal_keep_size``) is replaced only with ``--create-slot``, which records
the gap. The password is
never taken from ``--dsn`` (a command line is visible in ``ps``): libpq reads it from
PGPASSWORD or a pgpass file (PGPASSFILE, default ~/.pgpass). A DSN that names no ``sslmode`` is
connected with verified TLS (govdr/lambda_support/pg_tls.py: sslmode=verify-full against the
pinned RDS roots, or the CA file named by GOVDR_PG_ROOT_CERT, and require_auth=scram-sha-256);
a DSN that names its own ``sslmode`` (a local PostgreSQL: ``sslmode=disable``) is used as given.
Exit 2: bad arguments, or the archive or the database refused (the message says which and how
to fix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from govdr.lambda_support.pg_tls import TlsSetupError, tls_from_env, with_verified_tls
from govdr.txlog import contract
from govdr.txlog.runtime.archive import Archive, ArchiveError, parse_lsn
from govdr.txlog.runtime.spill import DEFAULT_SPILL_BYTES

PROG = "python -m govdr.txlog.runtime"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line: what was wrong and where to look.
        self.exit(2, f"{PROG}: {message} (see --help)\n")


def dsn_problem(dsn: str) -> str | None:
    """Why the DSN is refused, or None. The DSN itself is never echoed."""
    from psycopg2.extensions import parse_dsn

    try:
        parsed = parse_dsn(dsn)
    except Exception:
        return (
            "--dsn is not a valid libpq connection string (key=value pairs or a postgresql:// URI)"
        )
    if "password" in parsed:
        return (
            "--dsn contains a password, which any user can read in the process list; "
            "remove it and set PGPASSWORD or use a pgpass file (PGPASSFILE, default ~/.pgpass)"
        )
    return None


def slot_exists(connection: Any, slot: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        return cursor.fetchone() is not None


def _positive_mib(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of MiB from 1 to 4096 (e.g. 4)"
        )
    return value


def _retention_days(text: str) -> int:
    try:
        return contract.retention_days(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog=PROG, description=__doc__)
    parser.add_argument("--dsn", required=True, help="libpq connection string without a password")
    parser.add_argument("--dir", required=True, type=Path, help="archive directory")
    parser.add_argument("--slot", required=True, help="the logical replication slot to read")
    parser.add_argument(
        "--create-slot",
        action="store_true",
        help="create the slot (wal2json) if missing, or anew if the server invalidated it (the "
        "gap is recorded in the archive); without it a missing or invalidated slot is an error",
    )
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument(
        "--kms-key",
        help="AWS KMS key (ARN, ID or alias) the archive is keyed with (as the deployed archiver)",
    )
    keys.add_argument(
        "--key-file",
        type=Path,
        help="local archive key file (32 random bytes, created 0600 if missing; keep it outside "
        "--dir) for an archive kept outside AWS",
    )
    parser.add_argument("--idle", type=float, default=1.0, help="stop after this many idle seconds")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--batch", type=int, default=5000, help="transactions per segment")
    parser.add_argument(
        "--stop-lsn", default=None, help="stop once a commit ending at or after this LSN (X/Y)"
    )
    parser.add_argument(
        "--spill-mib",
        type=_positive_mib,
        default=DEFAULT_SPILL_BYTES // 2**20,
        help="a transaction whose changes pass this many MiB is written to --dir as it arrives "
        "(default %(default)s), so memory stays bounded for any transaction",
    )
    parser.add_argument(
        "--retention-days",
        type=_retention_days,
        default=None,
        help="at the end of the run, prune the segments whose newest commit is older than this "
        "many days plus one (the deployed archiver uses txlogRetentionDays); default: no pruning",
    )
    args = parser.parse_args(argv)
    problem = dsn_problem(args.dsn)
    if problem:
        print(f"txlog-archiver: {problem}", file=sys.stderr)
        return 2
    try:
        dsn = with_verified_tls(args.dsn, tls_from_env(os.environ))
    except TlsSetupError as exc:
        print(f"txlog-archiver: {exc}", file=sys.stderr)
        return 2

    import psycopg2
    import psycopg2.extras

    from govdr.txlog.runtime.archiver import Archiver
    from govdr.txlog.runtime.integrity import FileKeyring, Keyring, KmsKeyring

    keyring: Keyring
    if args.kms_key:
        import boto3

        keyring = KmsKeyring(boto3.client("kms"), args.kms_key)
    else:
        keyring = FileKeyring(args.key_file)
    archiver = Archiver(
        archive=Archive(args.dir),
        keyring=keyring,
        slot=args.slot,
        connect_sql=lambda: psycopg2.connect(dsn),
        connect_replication=lambda: psycopg2.connect(
            dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
        ),
        batch_transactions=args.batch,
        idle_seconds=args.idle,
        deadline=time.monotonic() + args.max_seconds if args.max_seconds else None,
        stop_lsn=parse_lsn(args.stop_lsn) if args.stop_lsn else None,
        replace_lost_slot=args.create_slot,
        spill_bytes=args.spill_mib * 2**20,
        retention=timedelta(days=args.retention_days) if args.retention_days else None,
    )
    try:
        if not args.create_slot:
            connection = psycopg2.connect(dsn)
            try:
                exists = slot_exists(connection, args.slot)
            finally:
                connection.close()
            if not exists:
                print(
                    f"txlog-archiver: replication slot {args.slot!r} does not exist on the "
                    "server; check --slot, or pass --create-slot to create it",
                    file=sys.stderr,
                )
                return 2
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
