"""Read and replay the archive: list segments, show changes, apply them to a database.

Replay applies archived transactions in commit order, each in its own database transaction
together with a bookkeeping row (``govdr_txlog_replay``) that records the last applied end LSN,
so a replay that is interrupted or run twice applies every transaction exactly once.

Archive content is data, never SQL:

- column types come from the target's catalog (``format_type`` of ``pg_attribute``), never
  from the archive's ``type`` field; identifiers are quoted with ``psycopg2.sql.Identifier``;
- only tables that exist in the target are replayed (or those given in ``tables``); system
  schemas (``pg_*``, ``information_schema``) and the bookkeeping table are refused;
- only inserts, updates and deletes are replayed: a truncate (``T``) or any other action stops
  the replay before that transaction; logical messages (``M``) carry no row change and are
  counted, not applied;
- values never appear in a statement's text: they are sent with ``COPY ... FROM STDIN`` as
  data into a temporary table, and the statements read them from there, so neither
  ``log_statement`` nor pgaudit records them;
- numbers stay exact: archive JSON is parsed with ``Decimal`` for fractions;
- the archive is verified as it is read: every segment of the window against its seal with the
  archive's key, and its link to the record before it (nothing from a forged, changed,
  reordered or incomplete window is applied); at a recorded gap replay stops, with everything
  before it applied (:class:`ReplayGap`).

The replaying session sets ``session_replication_role = replica`` (the target's triggers,
including foreign-key triggers, do not fire; the changes already passed them on the source),
leaves stored generated columns to the target, writes identity ``ALWAYS`` columns with
``OVERRIDING SYSTEM VALUE``, and at the end moves every sequence owned by a replayed table past
the highest replayed value.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from govdr.txlog.runtime.archive import (
    Archive,
    ArchiveError,
    ChainStart,
    Gap,
    IntegrityError,
    Segment,
    format_lsn,
    is_last_piece,
    link,
    parse_commit_time,
)
from govdr.txlog.runtime.integrity import ArchiveKey

BOOKKEEPING = "govdr_txlog_replay"
STAGING = "govdr_txlog_replay_rows"
SYSTEM_SCHEMAS = frozenset({"information_schema"})
ROW_ACTIONS = frozenset({"I", "U", "D"})


class ReplayError(ArchiveError):
    """The archive asks for something replay does not do; the message says what and why."""


class ReplayGap(ReplayError):
    """The window crosses a recorded gap: what is before it is applied, nothing after."""


def load_line(line: bytes | str) -> Any:
    """One archive line; numbers with a fraction or exponent become ``Decimal`` (exact)."""
    return json.loads(line, parse_float=Decimal)


@dataclass(frozen=True)
class Window:
    """Which transactions: end LSN after ``start_lsn`` / committed after ``start_time``,
    and committed at or before ``until``."""

    start_lsn: int = 0
    start_time: datetime | None = None
    until: datetime | None = None

    def admits(self, txn: dict[str, Any]) -> bool:
        if txn["end_lsn"] <= self.start_lsn:
            return False
        committed = parse_commit_time(txn["commit_time"])
        if self.start_time is not None and committed <= self.start_time:
            return False
        return self.until is None or committed <= self.until


def segments_between(
    archive: Archive, start: datetime | None, end: datetime | None
) -> list[Segment]:
    """Segments whose commit-time range overlaps [start, end]."""
    return [
        s
        for s in archive.segments()
        if (start is None or s.last_commit >= start) and (end is None or s.first_commit <= end)
    ]


def _before(record: Segment | Gap, window: Window) -> bool:
    """Whether the record lies wholly before the window (nothing in it is admitted)."""
    if isinstance(record, Gap):
        if record.resume_lsn <= window.start_lsn and window.start_lsn:
            return True
        if window.start_time is None:
            return False
        recorded = record.read().get("recorded_at")
        try:
            return recorded is not None and parse_commit_time(str(recorded)) <= window.start_time
        except ValueError:
            return False
    if record.last_end_lsn <= window.start_lsn:
        return True
    return window.start_time is not None and record.last_commit < window.start_time


def transactions(
    archive: Archive,
    window: Window,
    key: ArchiveKey | None = None,
    *,
    stop_at_gaps: bool = False,
) -> Iterator[dict[str, Any]]:
    """The window's transactions in commit order, numbers exact, each segment checked against
    its seal and its link to the record before it (with ``key``: and the seals' MACs).

    A large transaction comes as its parts, one at a time (``part``/``parts``; each carries
    the transaction's fields, and :func:`is_last_piece` tells the last), so that no reader holds
    it whole.

    With ``stop_at_gaps``, a recorded gap inside the window raises :class:`ReplayGap` once
    everything before it has been yielded.
    """
    start = archive.chain_start(key)
    prev = start.mac
    if stop_at_gaps and start.through_end_lsn and _needs_pruned(window, start):
        raise ReplayGap(
            f"the archive was pruned up to end LSN {format_lsn(start.through_end_lsn)} (commits "
            f"up to {start.last_pruned_commit}, older than its retention; {start.anchor}): the "
            "restore point is older, so the changes from it up to there are not in the archive. "
            "Nothing was applied; restore a point after that commit (docs/runbook.md, "
            '"Archive retention")'
        )
    previous: Segment | Gap | None = None
    for record in start.kept(archive.records()):
        if _before(record, window):
            previous = record
            continue
        if (
            isinstance(record, Segment)
            and window.until is not None
            and record.first_commit > window.until
        ):
            return
        if previous is not None:  # the window's first record: anchored on the one before it
            prev, previous = Archive.mac_of(previous, key), None
        if isinstance(record, Gap):
            prev = _pass_gap(record, key, prev, window, stop_at_gaps=stop_at_gaps)
            continue
        content = record.read(key)
        if prev is not None:
            try:
                link(record, content.seal.prev, prev)
            except IntegrityError:
                content.spool.close()
                raise
        prev = content.seal.mac
        for txn in record.pieces(content, parse_float=Decimal):
            if window.admits(txn):
                yield txn


def _pass_gap(
    record: Gap, key: ArchiveKey | None, prev: str | None, window: Window, *, stop_at_gaps: bool
) -> str:
    """Check a gap record's link and give its MAC (the next record's anchor); with
    ``stop_at_gaps``, raise ReplayGap for a gap before the window's end."""
    body = record.read(key)
    if prev is not None:
        link(record, body.get("prev"), prev)
    before = body.get("last_commit_before")
    if stop_at_gaps and (
        window.until is None or before is None or parse_commit_time(str(before)) < window.until
    ):
        raise ReplayGap(
            f"the archive has a gap ({record.path.name}): the changes after end LSN "
            f"{format_lsn(record.after_end_lsn)} (last archived commit {before}) up to "
            f"{format_lsn(record.resume_lsn)} are not in it ({body.get('reason')}). "
            "Replay applied everything before the gap and stops there; to recover past "
            "it, restore a snapshot or backup taken after the gap (docs/runbook.md, "
            '"Archive gap")'
        )
    return str(body.get("mac"))


def _needs_pruned(window: Window, start: ChainStart) -> bool:
    """Whether the window begins before the pruned stretch ends (it would need what is gone)."""
    if window.start_lsn >= start.through_end_lsn:
        return False
    if window.start_time is None or start.last_pruned_commit is None:
        return True
    try:
        return window.start_time < parse_commit_time(start.last_pruned_commit)
    except ValueError:
        return True


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name


def changes_to_table(
    archive: Archive, table: str, window: Window, key: ArchiveKey | None = None
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(transaction, change) for every change to ``schema.table`` in the window."""
    schema, name = _split(table)
    for txn in transactions(archive, window, key):
        for change in txn["changes"]:
            if change.get("schema") == schema and change.get("table") == name:
                yield txn, change


def _json_text(value: Any) -> str:
    """JSON text of a value parsed by :func:`load_line`, numbers as written."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(map(_json_text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_json_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def _as_text(value: Any) -> str | None:
    """The value as PostgreSQL's text input for the column (wal2json writes booleans and
    numbers as JSON literals, json columns as JSON, everything else as its text form)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | Decimal | list | dict):
        return _json_text(value)
    return str(value)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type() of the target's catalog
    generated: bool  # stored generated column: the target computes it
    identity_always: bool


@dataclass
class _Target:
    """What replay knows of the target database (its catalog, read once per table)."""

    cursor: Any
    allowed: frozenset[tuple[str, str]] | None
    tables: dict[tuple[str, str], dict[str, Column]] = field(default_factory=dict)

    def admit(self, txn: dict[str, Any], change: dict[str, Any]) -> tuple[str, str] | None:
        """The change's table if it is to be replayed, None to skip it; raises if refused."""
        action = change.get("action")
        where = f"transaction xid {txn.get('xid')} (end LSN {txn.get('end_lsn')})"
        schema, table = change.get("schema"), change.get("table")
        if action == "M":
            return None
        if action not in ROW_ACTIONS:
            what = "a TRUNCATE" if action == "T" else f"action {action!r}"
            raise ReplayError(
                f"{where} holds {what} of {schema}.{table}; replay applies only inserts, "
                "updates and deletes (I/U/D), so it stopped before this transaction (the ones "
                "before it are applied). Apply that transaction on the target by hand, then "
                "run replay again with --start-lsn set to its end LSN"
            )
        if not isinstance(schema, str) or not isinstance(table, str) or not schema or not table:
            raise ReplayError(f"{where} has a change without a schema and table name")
        if schema in SYSTEM_SCHEMAS or schema.startswith("pg_") or table == BOOKKEEPING:
            raise ReplayError(
                f"{where} changes {schema}.{table}; replay never writes system schemas "
                f"(pg_*, information_schema) or its bookkeeping table {BOOKKEEPING}. "
                "The archive is not what the archiver wrote: check where it came from"
            )
        if self.allowed is not None and (schema, table) not in self.allowed:
            return None
        if (schema, table) not in self.tables:
            self.tables[(schema, table)] = self._catalog(schema, table, where)
        return schema, table

    def _catalog(self, schema: str, table: str, where: str) -> dict[str, Column]:
        self.cursor.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated = 's', "
            "a.attidentity = 'a' FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped",
            (schema, table),
        )
        columns = {r[0]: Column(r[0], r[1], r[2], r[3]) for r in self.cursor.fetchall()}
        if not columns:
            raise ReplayError(
                f"{where} changes {schema}.{table}, which does not exist in the target; "
                "replay does not replay DDL: create the table on the target (or restore a "
                "later snapshot), or leave it out with --tables"
            )
        return columns

    def column(self, key: tuple[str, str], name: Any) -> Column:
        found = self.tables[key].get(name) if isinstance(name, str) else None
        if found is None:
            raise ReplayError(
                f"the archive names column {name!r} of {key[0]}.{key[1]}, which the target "
                "table does not have; replay does not replay DDL: add the column on the "
                "target first"
            )
        return found


def _value(index: int, column: Column, source: str = "staged") -> Any:
    """``(staged.v ->> index)::<type from the target's catalog>``; wal2json writes bytea as
    bare hexadecimal digits, so those are decoded."""
    from psycopg2 import sql

    text = sql.SQL("({}.v ->> {})").format(sql.Identifier(source), sql.Literal(index))
    if column.type == "bytea":
        return sql.SQL("decode({}, 'hex')").format(text)
    return sql.SQL("{}::{}").format(text, sql.SQL(column.type))


def _statement(
    target: _Target, key: tuple[str, str], change: dict[str, Any]
) -> tuple[Any, list[Any]]:
    """The statement for one change, reading its values from the staging row, and the values
    (in the order the statement reads them) to stage."""
    from psycopg2 import sql

    table = sql.Identifier(*key)
    action = change["action"]
    values: list[Any] = []

    def stage(value: Any) -> int:
        values.append(_as_text(value))
        return len(values) - 1

    def matches(identity: list[dict[str, Any]]) -> Any:
        # "=" lets the target use its key's index; IS NOT DISTINCT FROM would scan the table.
        if not identity:
            raise ReplayError(
                f"an {action!r} change of {key[0]}.{key[1]} carries no identity (key) columns; "
                "give the table a primary key or REPLICA IDENTITY on the source"
            )
        parts = []
        for item in identity:
            c = target.column(key, item.get("name"))
            column = sql.SQL("{}.{}").format(sql.Identifier("target"), sql.Identifier(c.name))
            if item.get("value") is None:
                parts.append(column + sql.SQL(" IS NULL"))
            else:
                parts.append(column + sql.SQL(" = ") + _value(stage(item["value"]), c))
        return sql.SQL(" AND ").join(parts)

    if action == "I":
        columns = [
            (c, item.get("value"))
            for item in change.get("columns", [])
            for c in [target.column(key, item.get("name"))]
            if not c.generated
        ]
        overriding = any(c.identity_always for c, _ in columns)
        statement = sql.SQL(
            "INSERT INTO {} ({}) {}SELECT {} FROM pg_temp.{} AS staged WHERE staged.n = %s"
        ).format(
            table,
            sql.SQL(", ").join(sql.Identifier(c.name) for c, _ in columns),
            sql.SQL("OVERRIDING SYSTEM VALUE " if overriding else ""),
            sql.SQL(", ").join(_value(stage(v), c) for c, v in columns),
            sql.Identifier(STAGING),
        )
    elif action == "U":
        assignments = [
            sql.SQL("{} = {}").format(sql.Identifier(c.name), _value(stage(item.get("value")), c))
            for item in change.get("columns", [])
            for c in [target.column(key, item.get("name"))]
            # The target computes generated columns; identity ALWAYS columns cannot be updated
            # (the source could not have changed them either).
            if not c.generated and not c.identity_always
        ]
        if not assignments:
            return None, []
        statement = sql.SQL(
            "UPDATE {} AS target SET {} FROM pg_temp.{} AS staged WHERE staged.n = %s AND {}"
        ).format(
            table,
            sql.SQL(", ").join(assignments),
            sql.Identifier(STAGING),
            matches(change.get("identity", [])),
        )
    else:  # "D"
        statement = sql.SQL(
            "DELETE FROM {} AS target USING pg_temp.{} AS staged WHERE staged.n = %s AND {}"
        ).format(table, sql.Identifier(STAGING), matches(change.get("identity", [])))
    return statement, values


def _copy_escape(text: str) -> str:
    """COPY text format: the JSON below is ASCII without control characters (json.dumps
    escapes them), so only the backslash needs doubling."""
    return text.replace("\\", "\\\\")


def apply_transaction(target: _Target, txn: dict[str, Any]) -> int:
    """Apply one archived transaction's row changes; return how many were skipped.

    Values are bound on the server side without parameters in the statement text: psycopg2
    interpolates parameters into the statement on the client, so ``log_statement`` and
    pgaudit (``pgaudit.log = write``) would record every replayed value. Instead the values
    travel as COPY data into a temporary table (one row of JSON text per change) and each
    statement reads them from there; the logged text holds only names, the target's types
    and row numbers.
    """
    cursor = target.cursor
    planned: list[tuple[Any, int]] = []
    rows: list[str] = []
    skipped = 0
    if txn.get("part", 0):  # a later part of a large transaction: its own staging rows
        cursor.execute(f"DELETE FROM pg_temp.{STAGING}")  # noqa: S608
    for change in txn["changes"]:
        key = target.admit(txn, change)
        if key is None:
            skipped += 1
            continue
        statement, values = _statement(target, key, change)
        if statement is None:
            continue
        planned.append((statement, len(rows)))
        rows.append(f"{len(rows)}\t{_copy_escape(json.dumps(values))}\n")
    if rows:
        cursor.copy_expert(f"COPY pg_temp.{STAGING} (n, v) FROM STDIN", io.StringIO("".join(rows)))
        for statement, row in planned:
            cursor.execute(statement, (row,))
    return skipped


def _advance_sequences(cursor: Any, tables: Collection[tuple[str, str]]) -> None:
    """Move each sequence owned by a replayed table past the highest value in its column."""
    from psycopg2 import sql

    for schema, table in sorted(tables):
        qualified = sql.Identifier(schema, table).as_string(cursor)
        cursor.execute(
            "SELECT a.attname, pg_get_serial_sequence(%s, a.attname) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "AND pg_get_serial_sequence(%s, a.attname) IS NOT NULL",
            (qualified, qualified, qualified),
        )
        for column, sequence in cursor.fetchall():
            cursor.execute(
                sql.SQL(
                    "SELECT setval(%s::regclass, m) FROM (SELECT max({}) AS m FROM {}) AS x "
                    "WHERE m > coalesce(pg_sequence_last_value(%s::regclass), 0)"
                ).format(sql.Identifier(column), sql.Identifier(schema, table)),
                (sequence, sequence),
            )


@dataclass
class ReplayResult:
    applied: int
    skipped: int
    last_end_lsn: int
    last_commit_time: str | None
    skipped_changes: int = 0  # logical messages and changes to tables outside ``tables``
    sequences_advanced_for: list[str] = field(default_factory=list)


def _allow_list(tables: Collection[str] | None) -> frozenset[tuple[str, str]] | None:
    if tables is None:
        return None
    allowed = frozenset(_split(t) for t in tables)
    for schema, table in allowed:
        if (
            not table
            or schema in SYSTEM_SCHEMAS
            or schema.startswith("pg_")
            or table == BOOKKEEPING
        ):
            raise ReplayError(
                f"--tables names {schema}.{table}; give tables as schema.table, not system "
                f"schemas (pg_*, information_schema) or the bookkeeping table {BOOKKEEPING}"
            )
    return allowed


def _begin_replay(connection: Any) -> int:
    """Turn the target's triggers off for this session, create the bookkeeping and staging
    tables, and give the end LSN of the last transaction applied before (0: none)."""
    import psycopg2

    with connection.cursor() as cursor:
        try:
            # Needs superuser (https://www.postgresql.org/docs/15/runtime-config-client.html
            # #GUC-SESSION-REPLICATION-ROLE); on RDS the master user (rds_superuser) may set it:
            # https://repost.aws/knowledge-center/rds-postgresql-foreign-keys
            cursor.execute("SET session_replication_role = replica")
        except psycopg2.errors.InsufficientPrivilege:
            connection.rollback()
            raise ReplayError(
                "the target user may not set session_replication_role, which replay needs so "
                "that the target's triggers do not fire twice; connect as the master user "
                "(on RDS it has rds_superuser)"
            ) from None
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING} "
            "(id int PRIMARY KEY CHECK (id = 1), last_end_lsn bigint NOT NULL, "
            "last_commit_time text)"
        )
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} "
            "(n int PRIMARY KEY, v json NOT NULL) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"SELECT last_end_lsn FROM {BOOKKEEPING} WHERE id = 1")  # noqa: S608
        row = cursor.fetchone()
    connection.commit()
    return int(row[0]) if row else 0


def _record_applied(cursor: Any, txn: dict[str, Any]) -> None:
    """Note the transaction in the bookkeeping table, in the database transaction that applies
    it (both commit together, or neither)."""
    cursor.execute(
        f"INSERT INTO {BOOKKEEPING} (id, last_end_lsn, last_commit_time) "  # noqa: S608
        "VALUES (1, %s, %s) ON CONFLICT (id) DO UPDATE SET "
        "last_end_lsn = EXCLUDED.last_end_lsn, "
        "last_commit_time = EXCLUDED.last_commit_time",
        (txn["end_lsn"], txn["commit_time"]),
    )


def _end_replay(connection: Any) -> None:
    """Drop anything uncommitted (a failed transaction too) and turn triggers back on."""
    import psycopg2

    if connection.closed:
        return
    try:
        connection.rollback()
        with connection.cursor() as cursor:
            cursor.execute("RESET session_replication_role")
        connection.commit()
    except psycopg2.Error:
        pass  # the connection is gone: the error that ended the replay is raised


def replay(
    archive: Archive,
    connection: Any,
    window: Window,
    *,
    key: ArchiveKey,
    tables: Collection[str] | None = None,
    progress: Callable[[int, str], None] | None = None,
    progress_every: int = 1000,
) -> ReplayResult:
    """Apply the window's transactions to ``connection`` exactly once, in commit order.

    ``tables`` (``schema.table``) limits replay to those tables; changes to others are
    skipped and counted. Without it every table the archive names must exist in the target.
    ``key`` is the archive's key: every segment applied is verified with it first.
    """

    allowed = _allow_list(tables)
    done = _begin_replay(connection)
    applied = skipped = skipped_changes = 0
    last_lsn, last_time = done, None
    try:
        with connection.cursor() as cursor:
            target = _Target(cursor, allowed)
            try:
                inside: dict[str, Any] | None = None  # a large transaction being applied
                for txn in transactions(archive, window, key, stop_at_gaps=True):
                    last_piece = is_last_piece(txn)
                    inside = None if last_piece else txn
                    if txn["end_lsn"] <= done:
                        skipped += last_piece
                        # Its tables still count for the sequences (an interrupted replay).
                        for change in txn["changes"]:
                            target.admit(txn, change)
                        continue
                    try:
                        skipped_changes += apply_transaction(target, txn)
                        if not last_piece:
                            # A large transaction's parts are applied in one database
                            # transaction, committed with its last part.
                            continue
                        _record_applied(cursor, txn)
                    except BaseException:
                        connection.rollback()
                        raise
                    connection.commit()
                    applied += 1
                    last_lsn, last_time = txn["end_lsn"], txn["commit_time"]
                    if progress is not None and applied % progress_every == 0:
                        progress(applied, txn["commit_time"])
                if inside is not None:  # read() refuses such a segment; never commit half
                    raise IntegrityError(
                        f"the archive ends inside transaction {inside.get('xid')} (after its "
                        f"part {inside.get('part')}, before its last); it was not applied"
                    )
            except ReplayGap:
                if inside is not None:  # never commit part of a transaction
                    connection.rollback()
                # What was applied is kept and usable: its sequences move past it too.
                _advance_sequences(cursor, target.tables)
                connection.commit()
                raise
            _advance_sequences(cursor, target.tables)
            connection.commit()
            replayed = [f"{s}.{t}" for s, t in sorted(target.tables)]
    finally:
        _end_replay(connection)
    return ReplayResult(applied, skipped, last_lsn, last_time, skipped_changes, replayed)


def describe_segment(segment: Segment) -> dict[str, Any]:
    return {
        "file": segment.path.name,
        "first_commit": segment.first_commit.isoformat(),
        "last_commit": segment.last_commit.isoformat(),
        "first_end_lsn": segment.first_end_lsn,
        "last_end_lsn": segment.last_end_lsn,
        "bytes": segment.path.stat().st_size,
    }
