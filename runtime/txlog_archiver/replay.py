"""Read and replay the archive: list segments, show changes, apply them to a database.

Replay applies archived transactions in commit order, each in its own database transaction
together with a bookkeeping row (``govdr_txlog_replay``) that records the last applied end LSN,
so a replay that is interrupted or run twice applies every transaction exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.txlog_archiver.archive import Archive, Segment, parse_commit_time

BOOKKEEPING = "govdr_txlog_replay"


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


def transactions(archive: Archive, window: Window) -> Iterator[dict[str, Any]]:
    for segment in segments_between(archive, window.start_time, window.until):
        if segment.last_end_lsn <= window.start_lsn:
            continue
        for txn in segment.transactions():
            if window.admits(txn):
                yield txn


def changes_to_table(
    archive: Archive, table: str, window: Window
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(transaction, change) for every change to ``schema.table`` in the window."""
    schema, _, name = table.rpartition(".")
    schema = schema or "public"
    for txn in transactions(archive, window):
        for change in txn["changes"]:
            if change.get("schema") == schema and change.get("table") == name:
                yield txn, change


def _columns(items: list[dict[str, Any]]) -> tuple[list[str], list[str], list[Any]]:
    return (
        [c["name"] for c in items],
        [c["type"] for c in items],
        [c["value"] for c in items],
    )


def apply_change(cursor: Any, change: dict[str, Any]) -> None:
    """Apply one wal2json format-2 change through parameterized SQL."""
    from psycopg2 import sql

    action = change["action"]
    table = sql.Identifier(change.get("schema", "public"), change.get("table", ""))

    def typed(types: list[str]) -> list[sql.Composable]:
        return [sql.SQL("%s::{}").format(sql.SQL(t)) for t in types]

    def condition(key: list[dict[str, Any]]) -> tuple[sql.Composable, list[Any]]:
        names, types, values = _columns(key)
        parts = [
            sql.SQL("{} IS NOT DISTINCT FROM ").format(sql.Identifier(n)) + p
            for n, p in zip(names, typed(types), strict=True)
        ]
        return sql.SQL(" AND ").join(parts), values

    if action == "I":
        names, types, values = _columns(change["columns"])
        cursor.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                table,
                sql.SQL(", ").join(map(sql.Identifier, names)),
                sql.SQL(", ").join(typed(types)),
            ),
            values,
        )
    elif action == "U":
        names, types, values = _columns(change["columns"])
        where, key_values = condition(change["identity"])
        assignments = [
            sql.SQL("{} = ").format(sql.Identifier(n)) + p
            for n, p in zip(names, typed(types), strict=True)
        ]
        cursor.execute(
            sql.SQL("UPDATE {} SET {} WHERE {}").format(
                table, sql.SQL(", ").join(assignments), where
            ),
            [*values, *key_values],
        )
    elif action == "D":
        where, key_values = condition(change["identity"])
        cursor.execute(sql.SQL("DELETE FROM {} WHERE {}").format(table, where), key_values)
    elif action == "T":
        cursor.execute(sql.SQL("TRUNCATE {}").format(table))
    # Messages ("M") carry no row change.


@dataclass
class ReplayResult:
    applied: int
    skipped: int
    last_end_lsn: int
    last_commit_time: str | None


def replay(
    archive: Archive,
    connection: Any,
    window: Window,
    *,
    progress: Callable[[int, str], None] | None = None,
    progress_every: int = 1000,
) -> ReplayResult:
    """Apply the window's transactions to ``connection`` exactly once, in commit order."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING} "
            "(id int PRIMARY KEY CHECK (id = 1), last_end_lsn bigint NOT NULL, "
            "last_commit_time text)"
        )
        cursor.execute(f"SELECT last_end_lsn FROM {BOOKKEEPING} WHERE id = 1")  # noqa: S608
        row = cursor.fetchone()
    connection.commit()
    done = int(row[0]) if row else 0
    applied = skipped = 0
    last_lsn, last_time = done, None
    for txn in transactions(archive, window):
        if txn["end_lsn"] <= done:
            skipped += 1
            continue
        with connection.cursor() as cursor:
            for change in txn["changes"]:
                apply_change(cursor, change)
            cursor.execute(
                f"INSERT INTO {BOOKKEEPING} (id, last_end_lsn, last_commit_time) "  # noqa: S608
                "VALUES (1, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "last_end_lsn = EXCLUDED.last_end_lsn, "
                "last_commit_time = EXCLUDED.last_commit_time",
                (txn["end_lsn"], txn["commit_time"]),
            )
        connection.commit()
        applied += 1
        last_lsn, last_time = txn["end_lsn"], txn["commit_time"]
        if progress is not None and applied % progress_every == 0:
            progress(applied, txn["commit_time"])
    return ReplayResult(applied, skipped, last_lsn, last_time)


def describe_segment(segment: Segment) -> dict[str, Any]:
    return {
        "file": segment.path.name,
        "first_commit": segment.first_commit.isoformat(),
        "last_commit": segment.last_commit.isoformat(),
        "first_end_lsn": segment.first_end_lsn,
        "last_end_lsn": segment.last_end_lsn,
        "bytes": segment.path.stat().st_size,
    }
