"""``govdr``: operator commands for the DR platform.

    govdr preflight [--suffix S | --stack NAME] [--cdk-out DIR] [--region R] [--json]
    govdr status                      [--outputs F] [--stack NAME] [--json]
    govdr drill failover (--dry-run | --confirm INSTANCE_ID) [--via-fis] [--stack NAME] ...
    govdr drill restore  (--dry-run | --confirm INSTANCE_ID) [--stack NAME] ...
    govdr txlog list    --dir DIR [--from TIME] [--to TIME] [--json]
    govdr txlog show    --dir DIR --table SCHEMA.TABLE [--from TIME] [--to TIME] [KEY] [--json]
    govdr txlog verify  --dir DIR KEY [--json]
    govdr txlog replay  --dir DIR KEY --target-dsn DSN (--start-lsn LSN | --start-time TIME)
                        --until TIME [--tables SCHEMA.TABLE,...] [--json]

KEY is the archive's integrity key: --kms-key KEY (the stack's TxlogIntegrityKeyArn output;
the caller needs kms:Decrypt on it) or --key-file FILE (an archive keyed with a local file).
TIME is ISO 8601 with a zone (2026-11-22T08:00:00+00:00); LSN is PostgreSQL's X/Y form.
The target DSN names no password: libpq reads it from PGPASSWORD or ~/.pgpass. A target DSN
that names no sslmode is connected with verified TLS (govdr/lambda_support/pg_tls.py:
sslmode=verify-full against the pinned RDS roots, or the CA file named by GOVDR_PG_ROOT_CERT, and
require_auth=scram-sha-256); one that names its own sslmode is used as given.
Exit codes: 0 done (verify: the archive is intact), 1 verify found a damaged record (the line
names the first bad file), 2 the command could not run or the archive refused it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from govdr.drills.commands import add_commands, render
from govdr.drills.failover import DrillError
from govdr.preflight.command import PreflightError
from govdr.preflight.command import add_command as add_preflight
from govdr.tools.outputs import OutputsError
from govdr.txlog.runtime.archive import Archive, ArchiveError, format_lsn, parse_lsn
from govdr.txlog.runtime.errors import IntegrityError
from govdr.txlog.runtime.integrity import (
    ArchiveKey,
    FileKeyring,
    Keyring,
    KmsKeyring,
    encryption_context,
)
from govdr.txlog.runtime.replay import (
    Window,
    changes_to_table,
    describe_segment,
    replay,
    segments_between,
)


class UsageError(ValueError):
    """Bad input; the message says what was wrong and what is allowed."""


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{flag} {value!r} is not an ISO 8601 time; use e.g. 2026-11-22T08:00:00+00:00"
        ) from None
    if parsed.tzinfo is None:
        raise UsageError(f"{flag} {value!r} has no time zone; add one, e.g. +00:00")
    return parsed


def _lsn(value: str | None) -> int:
    if value is None:
        return 0
    try:
        return parse_lsn(value)
    except ValueError:
        raise UsageError(
            f"--start-lsn {value!r} is not an LSN; use PostgreSQL's X/Y form, e.g. 0/1527E98"
        ) from None


def _archive(directory: Path) -> Archive:
    if not directory.is_dir():
        raise UsageError(
            f"--dir {directory} is not a directory; point it at the archive (EFS mount)"
        )
    return Archive(directory)


def _key(args: argparse.Namespace, archive: Archive, required: bool = True) -> ArchiveKey | None:
    """The archive's key, from the KMS key or the key file the command names."""
    if not (args.kms_key or args.key_file):
        if required:
            raise UsageError(
                "give the archive's key: --kms-key KEY (the stack output TxlogIntegrityKeyArn) "
                "or --key-file FILE"
            )
        return None
    manifest = archive.manifest()
    if manifest is None or not isinstance(manifest.get("key"), dict):
        raise ArchiveError(
            f"{archive.directory} has no manifest with an integrity key (archive.json): it is "
            "not an archive this version wrote, and cannot be verified"
        )
    keyring: Keyring
    if args.kms_key:
        import os

        import boto3

        from govdr.config import REGION

        region = os.environ.get("AWS_REGION") or REGION
        keyring = KmsKeyring(boto3.client("kms", region_name=region), args.kms_key)
    else:
        keyring = FileKeyring(args.key_file)
    try:
        context = encryption_context(manifest)
    except KeyError as exc:
        raise ArchiveError(f"{archive.directory}/archive.json names no {exc}") from None
    return keyring.open(manifest["key"], context)


def cmd_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    archive = _archive(args.dir)
    listed = segments_between(archive, _time(args.start, "--from"), _time(args.end, "--to"))
    for segment in listed:
        segment.read()  # a truncated or changed segment is named, not listed
    return [describe_segment(s) for s in listed]


def cmd_verify(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    archive = _archive(args.dir)
    key = _key(args, archive)
    assert key is not None
    try:
        report = archive.verify(key)
    except IntegrityError as exc:
        return {"intact": False, "error": str(exc)}, 1
    return {
        "intact": True,
        "segments": report.segments,
        "transactions": report.transactions,
        "first_end_lsn": format_lsn(report.first_end_lsn) if report.segments else None,
        "last_end_lsn": format_lsn(report.last_end_lsn) if report.segments else None,
        "last_commit": report.last_commit,
        "gaps": report.gaps,
        "pruned_through_end_lsn": (
            format_lsn(report.pruned_through_end_lsn) if report.pruned_through_end_lsn else None
        ),
        "pruned_last_commit": report.pruned_last_commit,
    }, 0


def _render_verify(result: dict[str, Any]) -> str:
    if not result["intact"]:
        return f"archive damaged: {result['error']}"
    lines = [
        f"archive intact: {result['segments']} segments, {result['transactions']} transactions, "
        f"end LSNs {result['first_end_lsn']}..{result['last_end_lsn']}, last commit "
        f"{result['last_commit']}"
    ]
    if result.get("pruned_through_end_lsn"):
        lines.append(
            f"pruned up to end LSN {result['pruned_through_end_lsn']} (commits up to "
            f"{result['pruned_last_commit']}, older than the retention): the chain starts after it"
        )
    for gap in result["gaps"]:
        lines.append(
            f"gap {gap['file']}: {gap['after_end_lsn']}..{gap['resume_lsn']} not archived "
            f"({gap['reason']})"
        )
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> list[dict[str, Any]]:
    archive = _archive(args.dir)
    window = Window(start_time=_time(args.start, "--from"), until=_time(args.end, "--to"))
    key = _key(args, archive, False)
    changes = [
        {"xid": txn["xid"], "commit_time": txn["commit_time"], "change": change}
        for txn, change in changes_to_table(archive, args.table, window, key)
    ]
    if key is None:
        # Without the key the seals' digests and links are checked, but not who wrote them: a
        # forged segment or prune anchor would pass. Said once, after the result.
        print(
            "not verified against the archive's key (seals and links checked, authorship "
            "not): give --kms-key or --key-file to verify",
            file=sys.stderr,
        )
    return changes


def _tables(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise UsageError("--tables is empty; give schema.table names separated by commas")
    return names


def _connect_target(dsn: str) -> Any:
    """Connect to ``--target-dsn``, with verified TLS unless it names its own sslmode; errors
    never repeat the DSN (it may hold a password)."""
    import os

    import psycopg2
    import psycopg2.extensions

    from govdr.lambda_support.pg_tls import TlsSetupError, tls_from_env, with_verified_tls

    try:
        params = psycopg2.extensions.parse_dsn(dsn)
        dsn = with_verified_tls(dsn, tls_from_env(os.environ))
    except TlsSetupError as exc:
        raise UsageError(str(exc)) from None
    except psycopg2.Error:
        raise UsageError(
            "--target-dsn is not a valid libpq connection string (not shown: it may hold a "
            "password); use key=value pairs, e.g. 'host=H port=5432 dbname=D user=U', or a "
            "postgresql:// URI, and the password in PGPASSWORD or ~/.pgpass"
        ) from None
    try:
        return psycopg2.connect(dsn)
    except psycopg2.Error as exc:
        reason = " ".join(line.strip() for line in str(exc).strip().splitlines())
        secret = params.get("password")
        if secret:
            reason = reason.replace(secret, "***")
        raise UsageError(f"cannot connect to the target database: {reason}") from None


def cmd_replay(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg2

    archive = _archive(args.dir)
    if (args.start_lsn is None) == (args.start_time is None):
        raise UsageError(
            "give exactly one of --start-lsn and --start-time (where the restore ends)"
        )
    window = Window(
        start_lsn=_lsn(args.start_lsn),
        start_time=_time(args.start_time, "--start-time"),
        until=_time(args.until, "--until"),
    )
    connection = _connect_target(args.target_dsn)
    try:
        key = _key(args, archive)
        assert key is not None
        result = replay(
            archive,
            connection,
            window,
            key=key,
            tables=_tables(args.tables),
            progress=lambda n, at: print(f"applied {n} transactions (up to {at})", file=sys.stderr),
        )
    except psycopg2.Error as exc:
        raise UsageError(
            f"replay stopped: the target refused a change: {str(exc).strip()}; the "
            "transactions before it are applied, run replay again once it is fixed"
        ) from None
    finally:
        connection.close()
    return {
        "applied": result.applied,
        "skipped_already_applied": result.skipped,
        "last_end_lsn": result.last_end_lsn,
        "last_commit_time": result.last_commit_time,
        "skipped_changes": result.skipped_changes,
        "tables": result.sequences_advanced_for,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="govdr", description="Operator commands for govdr.")
    groups = parser.add_subparsers(dest="group", required=True)
    txlog = groups.add_parser("txlog", help="the transaction-log archive on EFS")
    commands = txlog.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, time_range: bool = False) -> None:
        p.add_argument("--dir", type=Path, required=True, help="archive directory")
        p.add_argument("--json", action="store_true", help="print JSON")
        if time_range:
            p.add_argument("--from", dest="start", help="ISO 8601 time with a zone")
            p.add_argument("--to", dest="end", help="ISO 8601 time with a zone")

    def keys(p: argparse.ArgumentParser, required: bool) -> None:
        group = p.add_mutually_exclusive_group(required=required)
        group.add_argument(
            "--kms-key",
            help="the archive's AWS KMS key (ARN or alias; stack output TxlogIntegrityKeyArn); "
            "needs kms:Decrypt on it",
        )
        group.add_argument(
            "--key-file", type=Path, help="the archive's local key file (an archive outside AWS)"
        )

    listing = commands.add_parser("list", help="segments overlapping a time range")
    common(listing, time_range=True)
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser("show", help="changes to one table between two times")
    common(show, time_range=True)
    show.add_argument("--table", required=True, help="schema.table (schema defaults to public)")
    keys(show, required=False)
    show.set_defaults(func=cmd_show)

    verify = commands.add_parser(
        "verify",
        help="check every segment (seal, key, chain, LSN order); exit 1 names the first bad file",
    )
    common(verify)
    keys(verify, required=True)
    verify.set_defaults(func=cmd_verify, renders=True, renderer=_render_verify)

    rep = commands.add_parser("replay", help="apply archived changes to a restored database")
    common(rep)
    keys(rep, required=True)
    rep.add_argument(
        "--target-dsn",
        required=True,
        help="libpq DSN of the restored database, without a password (PGPASSWORD or "
        "~/.pgpass). Without an sslmode in it, the connection is verified TLS: "
        "sslmode=verify-full against the pinned RDS eu-central-2 roots (or the CA file named "
        "by GOVDR_PG_ROOT_CERT) and require_auth=scram-sha-256; a DSN naming its own sslmode "
        "(e.g. sslmode=disable for a local PostgreSQL) is used as given",
    )
    rep.add_argument("--start-lsn", help="end LSN covered by the restore (X/Y)")
    rep.add_argument("--start-time", help="time covered by the restore (ISO 8601)")
    rep.add_argument("--until", required=True, help="replay commits up to this time (inclusive)")
    rep.add_argument(
        "--tables",
        help="replay only these tables (schema.table,...); default: every table the archive "
        "names, each of which must exist in the target",
    )
    rep.set_defaults(func=cmd_replay)

    add_commands(groups)
    add_preflight(groups)
    return parser


def _render(result: Any) -> str:
    if isinstance(result, dict):
        return "\n".join(f"{k}: {v}" for k, v in result.items())
    lines = []
    for row in result:
        if "file" in row:
            lines.append(
                f"{row['file']}  {row['first_commit']} .. {row['last_commit']}  {row['bytes']} B"
            )
        else:
            change = row["change"]
            lines.append(
                f"{row['commit_time']}  xid {row['xid']}  {change['action']} "
                f"{change.get('schema')}.{change.get('table')}"
            )
    return "\n".join(lines) if lines else "(nothing in that range)"


def main(argv: list[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    args = build_parser().parse_args(argv)
    code = 0
    try:
        if getattr(args, "renders", None):
            result, code = args.func(args)
        else:
            result = args.func(args)
    except (UsageError, ArchiveError, DrillError, OutputsError, PreflightError) as exc:
        print(f"govdr: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"govdr: an AWS request failed: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=str, indent=2))
    else:
        renderer = getattr(args, "renderer", None) or (
            render if getattr(args, "renders", None) else _render
        )
        print(renderer(result))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
