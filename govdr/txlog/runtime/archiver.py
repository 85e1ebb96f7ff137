"""Stream committed transactions from a logical replication slot into the archive.

Exactly once, by construction:

1. changes arrive over the streaming replication protocol (wal2json, format 2) and are
   grouped into whole transactions; a transaction without its COMMIT is never written;
2. a batch of whole transactions is written as one segment: new temporary file, fsync, link
   to its name, directory fsync (:meth:`Archive.write_segment`);
3. **only then** is the last archived commit's end LSN acknowledged to the server, so the slot
   never moves past anything that is not on disk;
4. after a restart or a reconnect the server redelivers from the slot's confirmed position;
   every transaction whose end LSN is at or below the highest archived one is dropped.

A crash between 2 and 3 redelivers the batch, and step 4 drops it.

The slot cannot fill the server's storage: the parameter group caps the WAL it keeps
(``max_slot_wal_keep_size``). A slot the server invalidated for it (wal_status ``lost``) is
replaced by a new one (``replace_lost_slot``; the Lambda and ``--create-slot``), and the stretch
of the stream the archive lost is recorded as a sealed gap, which ``govdr txlog verify`` lists,
replay stops at, and the ``ArchiveGaps`` metric and alarm report.

Segments are written by one background thread, in order, while the stream keeps being read
(an fsync then no longer stalls the server's sender). After a failed write it writes nothing
more, so the archive is always a gap-free prefix of the stream, and the run ends with the error.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from govdr.txlog.runtime.archive import (
    MANIFEST,
    Archive,
    ArchiveError,
    Bound,
    LargeSegment,
    Segment,
    format_lsn,
    parse_lsn,
    transaction_head,
    transaction_line,
)
from govdr.txlog.runtime.integrity import Keyring, encryption_context
from govdr.txlog.runtime.spill import DEFAULT_SPILL_BYTES, PART_BYTES, remove_leftovers

LOG = logging.getLogger(__name__)
# How long a run waits at its end for the server to apply its last acknowledgment.
SETTLE_SECONDS = 2.0

PLUGIN = "wal2json"
OPTIONS = {
    "format-version": "2",
    "include-xids": "1",
    "include-timestamp": "1",
    "include-lsn": "1",
}
DEFAULT_BATCH_TRANSACTIONS = 5000
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024
QUIET_SECONDS = 0.25
# After a wake-up, let half a millisecond of the stream arrive before reading: each read then
# takes several messages instead of one: less CPU per message (docs/txlog.md has the figures).
# Much longer waits fill the socket and stall the server's sender.
READ_BATCH_WAIT = 0.0005
# The segment writer runs at the lowest priority: the reading thread, which keeps the server's
# sender from waiting, gets the CPU whenever it can run (docs/txlog.md has the figures).
WRITER_NICE = 19
_BEGIN, _COMMIT = ord("B"), ord("C")


_COMMIT_FIELDS = re.compile(
    rb'"xid":(?P<xid>\d+),"timestamp":"(?P<ts>[^"]*)","lsn":"(?P<lsn>[^"]*)",'
    rb'"nextlsn":"(?P<next>[^"]*)"'
)


def _commit_fields(payload: bytes) -> tuple[int, str, str, str]:
    """(xid, commit time, commit LSN, end LSN) of a wal2json COMMIT record, unparsed."""
    match = _COMMIT_FIELDS.search(payload)
    if match is None:
        raise ValueError(f"unexpected wal2json COMMIT record: {payload[:200]!r}")
    return int(match["xid"]), match["ts"].decode(), match["lsn"].decode(), match["next"].decode()


# Kept beyond the retention before a segment is pruned: AWS Backup removes an expired recovery
# point some hours after its retention ends, and a restore of it still needs what followed it.
PRUNE_MARGIN = timedelta(days=1)

# ``RunStats.stopped_by`` of a run that found the slot held by another reader.
SLOT_BUSY = "slot_busy"


class SlotBusy(Exception):
    """Another reader holds the slot (PostgreSQL admits one per logical slot)."""


class SlotLost(Exception):
    """The server refused to stream from the slot (SQLSTATE 55000): invalidated, or not usable."""


class SlotInvalidated(ArchiveError):
    """The server invalidated the slot and this run may not replace it."""


@dataclass(frozen=True)
class SlotState:
    """A row of pg_replication_slots
    (https://www.postgresql.org/docs/15/view-pg-replication-slots.html)."""

    wal_status: str | None
    # Bytes of WAL that can still be written before the slot is lost; None without a cap.
    safe_wal_bytes: int | None
    # Bytes of WAL the slot keeps (current WAL position - restart_lsn); None once lost.
    retained_wal_bytes: int | None
    confirmed: int
    # PostgreSQL 17 and later name why a slot was invalidated; earlier majors say 'lost'.
    invalidation_reason: str | None

    @property
    def invalidated(self) -> bool:
        return self.wal_status == "lost" or self.invalidation_reason is not None


def slot_state(cursor: Any, slot: str) -> SlotState | None:
    """The slot's WAL health, or None when there is no such slot."""
    cursor.execute(
        "SELECT wal_status, safe_wal_size, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, "
        "confirmed_flush_lsn::text, to_jsonb(s) ->> 'invalidation_reason' "
        "FROM pg_replication_slots s WHERE slot_name = %s",
        (slot,),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    status, safe, retained, confirmed, reason = row
    return SlotState(
        wal_status=status,
        safe_wal_bytes=None if safe is None else int(safe),
        retained_wal_bytes=None if retained is None else int(retained),
        confirmed=parse_lsn(confirmed) if confirmed else 0,
        invalidation_reason=reason,
    )


@dataclass
class RunStats:
    transactions: int = 0
    bytes: int = 0
    segments: int = 0
    skipped: int = 0
    reconnects: int = 0
    last_commit_time: str | None = None
    last_end_lsn: int = 0
    stopped_by: str = ""
    # Gaps recorded by this run (the stream between the archive's end and the slot's start).
    gaps: int = 0
    # Transactions too large for memory, spilled to disk as they arrived.
    spilled: int = 0
    # Segments in the archive at the end of the run, and what this run pruned.
    archive_segments: int | None = None
    pruned_records: int = 0
    pruned_bytes: int = 0
    prune_failures: int = 0
    # Slots the server had invalidated (max_slot_wal_keep_size) and this run replaced.
    slot_invalidations: int = 0
    # The slot's WAL health when the run started (pg_replication_slots).
    slot_wal_status: str | None = None
    slot_safe_wal_bytes: int | None = None
    slot_retained_wal_bytes: int | None = None


def server_identity(cursor: Any, slot: str) -> dict[str, Any]:
    """Whose changes the archive holds: the cluster's system identifier, timeline, database and
    slot (https://www.postgresql.org/docs/15/functions-info.html#FUNCTIONS-PG-CONTROL-SYSTEM)."""
    cursor.execute(
        "SELECT (SELECT system_identifier FROM pg_control_system())::text, "
        "(SELECT timeline_id FROM pg_control_checkpoint()), current_database()"
    )
    system_identifier, timeline, database = cursor.fetchone()
    return {
        "system_identifier": system_identifier,
        "timeline": int(timeline),
        "database": database,
        "slot": slot,
    }


def _check_identity(manifest: dict[str, Any] | None, identity: dict[str, Any], path: Any) -> None:
    """Refuse an archive that belongs to another server, timeline, database or slot."""
    if manifest is None:
        return
    differ = [
        f"{key} {manifest.get(key)!r} (server: {identity[key]!r})"
        for key in ("system_identifier", "timeline", "database", "slot")
        if manifest.get(key) != identity[key]
    ]
    if differ:
        raise ArchiveError(
            f"{path} belongs to another source: {'; '.join(differ)}. "
            "A restored, promoted or replaced server, another database or another slot is "
            "archived into a new, empty directory (this archive stays readable for replay up to "
            "its end); nothing was archived and the replication slot was not touched"
        )


def ensure_slot(cursor: Any, slot: str) -> bool:
    """Create the logical slot unless it exists; return whether it was created."""
    cursor.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    if cursor.fetchone():
        return False
    cursor.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, PLUGIN))
    return True


@dataclass
class _Batch:
    lines: list[bytes]
    size: int
    first: Bound
    last: Bound
    # A large transaction: its segment is written from the _Part items that follow.
    large: bool = False

    @property
    def count(self) -> int:
        return 1 if self.large else len(self.lines)


@dataclass
class _Part:
    """One part line of the large transaction the writer has open; ``last`` completes it."""

    line: bytes
    last: bool


class _Abort:
    """The large transaction the writer has open never got its COMMIT: remove its file."""


@dataclass
class _LargeTransaction:
    xid: int
    lsn: str
    end_lsn: int
    commit_time: str
    batch: _Batch  # its accounting in the writer's results
    parts: int = 0  # part lines sent so far


class _Assembler:
    """One transaction's changes between its BEGIN and its COMMIT.

    Held in memory up to ``spill_bytes``; past that, the transaction continues on disk a part
    of about ``part_bytes`` at a time: ``start_large(begin record)`` opens its segment (False
    for a transaction archived before, whose changes are then dropped as they come) and
    ``write_part(changes)`` hands each part on. :meth:`commit` gives what is left.
    """

    __slots__ = (
        "_part_bytes",
        "_spill_at",
        "_spill_bytes",
        "_start_large",
        "_write_part",
        "add",
        "begin_record",
        "changes",
        "large",
        "open",
        "size",
    )

    def __init__(
        self,
        *,
        spill_bytes: int,
        part_bytes: int,
        start_large: Callable[[bytes], bool],
        write_part: Callable[[list[bytes]], None],
    ) -> None:
        self._spill_bytes = spill_bytes
        self._part_bytes = part_bytes
        self._start_large = start_large
        self._write_part = write_part
        self._spill_at = spill_bytes
        self.changes: list[bytes] = []
        self.size = 0
        self.begin_record = b""
        self.open = False  # between a BEGIN and its COMMIT
        self.large = False  # continued on disk
        self.add: Callable[[bytes], None] = self._ignore  # until a BEGIN

    def begin(self, record: bytes) -> None:
        self.changes = []
        self.size = 0
        self.begin_record = record
        self.open = True
        self.large = False
        self._spill_at = self._spill_bytes
        self.add = self._add

    def commit(self) -> list[bytes] | None:
        """The changes not yet handed on; None for a COMMIT without its BEGIN."""
        if not self.open:
            return None
        changes = self.changes
        self.changes = []
        self.open = False
        self.add = self._ignore
        return changes

    def _add(self, change: bytes) -> None:
        self.changes.append(change)
        self.size += len(change)
        if self.size > self._spill_at:
            self._spill()

    def _ignore(self, change: bytes) -> None:
        """Where a change outside a transaction, or of one archived before, goes."""

    def _spill(self) -> None:
        if not self.large:
            if not self._start_large(self.begin_record):
                self.changes = []
                self.add = self._ignore
                return
            self.large = True
            self._spill_at = self._part_bytes
            for part in _cut(self.changes, self._part_bytes):
                self._write_part(part)
        else:
            self._write_part(self.changes)
        self.changes = []
        self.size = 0


def _cut(changes: list[bytes], part_bytes: int) -> list[list[bytes]]:
    """Changes in consecutive parts of about ``part_bytes`` each."""
    parts: list[list[bytes]] = [[]]
    size = 0
    for change in changes:
        if size >= part_bytes:
            parts.append([])
            size = 0
        parts[-1].append(change)
        size += len(change)
    return parts


def _archive_error(exc: Exception) -> ArchiveError:
    return exc if isinstance(exc, ArchiveError) else ArchiveError(f"cannot write segment: {exc!r}")


class _SegmentWriter:
    """Writes batches as segments in a background thread, one at a time, in submission order.

    At most one item waits while one is written, which bounds memory. A large transaction is
    a batch marked ``large`` followed by its part lines (:class:`_Part`), written as they come.
    Results come back in order through :meth:`done`, one per batch; after a failed write, later
    batches are discarded unwritten.
    """

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.outstanding = 0
        # A large transaction is being sent: its result comes only with its last part (or its
        # abort), so waiting for "everything" must not wait for it.
        self.open_large = False
        self._todo: queue.Queue[_Batch | _Part | _Abort | None] = queue.Queue(maxsize=1)
        self._done: queue.SimpleQueue[tuple[_Batch, Segment | ArchiveError | None]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._work, name="segment-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:  # raising one's own nice value is always allowed
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        except OSError as exc:  # not fatal: segments are written either way
            LOG.info("segment writer keeps its priority: %s", exc)
        while (item := self._todo.get()) is not None:
            if isinstance(item, _Abort):
                self._abort_large()
            elif isinstance(item, _Part):
                self._write_part(item)
            elif self._failed:
                self._done.put((item, None))
            else:
                self._write_batch(item)

    # The writer thread's own state: the open large transaction's segment and accounting,
    # and whether a write failed (what follows is then discarded unwritten).
    _failed = False
    _large: LargeSegment | None = None
    _large_batch: _Batch | None = None

    def _abort_large(self) -> None:
        if self._large is not None and self._large_batch is not None:
            self._large.abort()
            self._done.put((self._large_batch, None))
        self._large = self._large_batch = None

    def _write_part(self, item: _Part) -> None:
        segment_open, batch = self._large, self._large_batch
        if segment_open is None or batch is None:  # failed before: discarded
            return
        try:
            segment_open.add(item.line)
            if item.last:
                self._large = self._large_batch = None
                self._done.put((batch, segment_open.finish()))
        except Exception as exc:
            self._failed = True
            self._large = self._large_batch = None
            segment_open.abort()
            self._done.put((batch, _archive_error(exc)))

    def _write_batch(self, item: _Batch) -> None:
        try:
            if item.large:
                self._large, self._large_batch = self.archive.open_large(item.last), item
                return
            segment = self.archive.write_segment(item.lines, item.first, item.last)
        except Exception as exc:  # reported to the reading thread, which would wait forever
            self._failed = True
            self._done.put((item, _archive_error(exc)))
        else:
            self._done.put((item, segment))

    def send(self, item: _Part | _Abort) -> None:
        """A part of the open large transaction, or its abort (no result of its own)."""
        if isinstance(item, _Abort) or item.last:
            self.open_large = False
        self._todo.put(item)

    def submit(self, batch: _Batch) -> None:
        self.outstanding += 1
        if batch.large:
            self.open_large = True
        self._todo.put(batch)

    def done(self, wait: bool) -> list[tuple[_Batch, Segment | ArchiveError | None]]:
        """Results ready now, or (``wait``) every outstanding one but an open large
        transaction's (it is the newest: transactions come one after another)."""
        results = []
        while self.outstanding and (
            (wait and self.outstanding > self.open_large) or not self._done.empty()
        ):
            results.append(self._done.get())
            self.outstanding -= 1
        return results

    def close(self) -> None:
        self._todo.put(None)
        self._thread.join()


class Archiver:
    """One run: drain the slot until idle, the deadline, or an error.

    ``connect_sql`` opens an ordinary connection (slot management); ``connect_replication``
    opens a psycopg2 LogicalReplicationConnection.
    """

    def __init__(
        self,
        *,
        archive: Archive,
        keyring: Keyring,
        slot: str,
        connect_sql: Callable[[], Any],
        connect_replication: Callable[[], Any],
        batch_transactions: int = DEFAULT_BATCH_TRANSACTIONS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        idle_seconds: float = 1.0,
        deadline: float | None = None,
        max_reconnects: int = 30,
        stop_lsn: int | None = None,
        replace_lost_slot: bool = False,
        spill_bytes: int = DEFAULT_SPILL_BYTES,
        spill_part_bytes: int = PART_BYTES,
        retention: timedelta | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.archive = archive
        self.keyring = keyring
        self.slot = slot
        self.connect_sql = connect_sql
        self.connect_replication = connect_replication
        self.batch_transactions = batch_transactions
        self.batch_bytes = batch_bytes
        self.idle_seconds = idle_seconds
        self.deadline = deadline
        self.max_reconnects = max_reconnects
        self.stop_lsn = stop_lsn
        # Whether a slot the server invalidated is dropped and created anew (a gap is recorded);
        # without it, the run stops with SlotInvalidated.
        self.replace_lost_slot = replace_lost_slot
        # A transaction whose changes pass spill_bytes is written to disk as it arrives, in
        # parts of spill_part_bytes, so memory is bounded for any transaction (spill.py).
        self.spill_bytes = spill_bytes
        self.spill_part_bytes = spill_part_bytes
        # Segments whose newest commit is older than retention (plus PRUNE_MARGIN) are pruned
        # at the end of each run, while the slot is still held (no other run writes then).
        self.retention = retention
        self.clock = clock
        self.stats = RunStats()
        # The large transaction being written: (its part line's fields, next part number).
        self._large: _LargeTransaction | None = None
        self._leftovers_checked = False
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._first: Bound | None = None
        self._last_commit: tuple[int, str] | None = None
        self._highest = 0
        # The archive's end when the stream (re)started: what the server sends up to it is
        # archived already.
        self._resume_from = 0
        self._last_message = 0.0
        self._writer: _SegmentWriter

    def prepare(self) -> None:
        """Check the archive against the server, verify its manifest and the chain's tail with
        the archive's key, create the slot if needed, learn what is archived, and record a gap
        if the slot starts after the archive's end.

        Refused, with the slot untouched: a file named like a segment that is not one, a tail
        that fails its seal, an archive end beyond the server's current WAL position, a
        manifest naming another server, timeline, database or slot, or one without a key.

        A slot the server invalidated (``max_slot_wal_keep_size``) holds nothing more to read:
        with ``replace_lost_slot`` it is dropped and created anew, and the stretch between the
        archive's end and the new slot's start is recorded as a gap; without, SlotInvalidated.
        """
        self.archive.check_writable()
        conn = self.connect_sql()
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                identity = server_identity(cursor, self.slot)
                self._open_archive(identity)
                segments = self.archive.segments()
                highest = segments[-1].last_end_lsn if segments else 0
                cursor.execute("SELECT pg_current_wal_lsn()::text")
                wal_end = parse_lsn(cursor.fetchone()[0])
                if highest > wal_end:
                    raise ArchiveError(
                        f"{segments[-1].path} ends at {format_lsn(highest)}, beyond the server's "
                        f"current WAL position {format_lsn(wal_end)}: it is not from this "
                        "server's stream. Move it out of the archive directory (or archive this "
                        "server into a new directory); nothing was acknowledged and the "
                        "replication slot was not touched"
                    )
                invalidated = self._replace_if_lost(cursor, highest)
                created = ensure_slot(cursor, self.slot)
                state = slot_state(cursor, self.slot)
        finally:
            conn.close()
        confirmed = state.confirmed if state else 0
        if state is not None:
            self.stats.slot_wal_status = state.wal_status
            self.stats.slot_safe_wal_bytes = state.safe_wal_bytes
            self.stats.slot_retained_wal_bytes = state.retained_wal_bytes
        self._note_gap(highest, confirmed, created=created, invalidated=invalidated)
        self._highest = highest

    def _replace_if_lost(self, cursor: Any, highest: int) -> bool:
        """Drop the slot if the server invalidated it (the next ensure_slot creates it anew);
        return whether it did. Without ``replace_lost_slot``: SlotInvalidated."""
        state = slot_state(cursor, self.slot)
        if state is None or not state.invalidated:
            return False
        why = state.invalidation_reason or "wal_removed"
        if not self.replace_lost_slot:
            raise SlotInvalidated(
                f"replication slot {self.slot} was invalidated by the server ({why}: it kept "
                "more WAL than max_slot_wal_keep_size allows, and that WAL is removed); the "
                f"archive is complete up to {format_lsn(highest)}. Run with --create-slot to "
                "record the gap and start a new slot (docs/runbook.md, 'Replication slot "
                "invalidated'); nothing was archived"
            )
        # Dropped only if it is still the invalidated one and nobody reads it: a run that
        # overlaps this one may have replaced it meanwhile, and its new slot is kept.
        cursor.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots s "
            "WHERE slot_name = %s AND NOT active AND (wal_status = 'lost' "
            "OR to_jsonb(s) ->> 'invalidation_reason' IS NOT NULL)",
            (self.slot,),
        )
        if not cursor.fetchall():
            return False
        self.stats.slot_invalidations += 1
        LOG.error(
            "replication slot %s was invalidated by the server (%s); dropped, a new one is "
            "created and the gap recorded",
            self.slot,
            why,
        )
        return True

    def _note_gap(self, highest: int, confirmed: int, *, created: bool, invalidated: bool) -> None:
        """Record a gap if the slot starts after the archive's end."""
        # A gap already recorded at the archive's end covers the stream up to its resume LSN.
        # So does a position recorded at the archive's end: the slot was confirmed there with
        # nothing for this archive in between (an idle database; Archive.record_position).
        covered = max(
            [highest, self.archive.confirmed_position(highest)]
            + [resume for after, resume in self.archive.gaps() if after == highest]
        )
        if not highest or not (created or confirmed > covered):
            return
        if invalidated:
            reason = (
                f"slot {self.slot} was invalidated by the server (its WAL exceeded "
                "max_slot_wal_keep_size and was removed before it was archived); a new slot "
                f"archives from {format_lsn(confirmed)}"
            )
        elif created:
            reason = f"slot {self.slot} was created for a non-empty archive"
        else:
            reason = (
                f"slot {self.slot} was confirmed at {format_lsn(confirmed)}, past the "
                f"archive's end {format_lsn(highest)}"
            )
        segments = self.archive.segments()
        last_commit = segments[-1].last_commit.isoformat() if segments else None
        path = self.archive.record_gap(highest, max(confirmed, highest), reason, last_commit)
        self.stats.gaps += 1
        LOG.error(
            "archive gap: the changes between %s and %s are not in the archive (%s); "
            "recorded in %s",
            format_lsn(highest),
            format_lsn(max(confirmed, highest)),
            reason,
            path.name,
        )

    def _replace_lost_slot_now(self, lost: SlotLost) -> None:
        """The server stopped streaming from the slot mid-run: replace it if it was invalidated
        (recording the gap after what this run archived), else fail with the server's words."""
        conn = self.connect_sql()
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                if not self._replace_if_lost(cursor, self._highest):
                    raise ArchiveError(
                        f"the server refuses to stream from slot {self.slot}: {lost}; "
                        "nothing more was archived"
                    )
                ensure_slot(cursor, self.slot)
                state = slot_state(cursor, self.slot)
        finally:
            conn.close()
        self._note_gap(
            self._highest, state.confirmed if state else 0, created=True, invalidated=True
        )

    def _open_archive(self, identity: dict[str, Any]) -> None:
        """Create the manifest and key of a new archive, or check an existing archive's
        identity and open its key; then verify the chain's tail."""
        path = self.archive.directory / MANIFEST
        manifest = self.archive.manifest()
        context = encryption_context(identity)
        if manifest is None:
            key, record = self.keyring.create(context)
            self.archive.create_manifest(identity, key, record)
            return
        _check_identity(manifest, identity, path)
        if not isinstance(manifest.get("key"), dict):
            raise ArchiveError(
                f"{path} holds no integrity key: the archive cannot be verified or extended. "
                "Archive into a new, empty directory (this one stays readable); nothing was "
                "archived and the replication slot was not touched"
            )
        self.archive.open_chain(self.keyring.open(manifest["key"], context))

    def run(self) -> RunStats:
        self.prepare()
        self._writer = _SegmentWriter(self.archive)
        try:
            return self._run()
        finally:
            self._writer.close()

    def _run(self) -> RunStats:
        import psycopg2

        attempts = 0
        while True:
            try:
                self._stream()
                return self.stats
            except SlotBusy as busy:
                LOG.info("slot %s is read by another run; this run exits (%s)", self.slot, busy)
                self.stats.stopped_by = SLOT_BUSY
                return self.stats
            except SlotLost as lost:
                # Everything received is made durable first: the gap starts after it.
                self._flush(cursor=None, wait=True)
                attempts += 1
                if attempts > self.max_reconnects or self._past_deadline():
                    raise ArchiveError(
                        f"the server refuses to stream from slot {self.slot}: {lost}"
                    ) from None
                self._replace_lost_slot_now(lost)
            except (psycopg2.DatabaseError, psycopg2.InterfaceError) as exc:
                # A failover or restart drops the connection: keep what is complete, resume.
                self._flush(cursor=None, wait=True)
                attempts += 1
                self.stats.reconnects += 1
                if attempts > self.max_reconnects or self._past_deadline():
                    raise
                LOG.warning("replication connection lost (%s); reconnecting", exc)
                time.sleep(min(0.2 * attempts, 2.0))

    def _past_deadline(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline

    def _stream(self) -> None:
        conn = self.connect_replication()
        cursor = conn.cursor()
        try:
            self._start_replication(cursor)
            self._read(conn, cursor)
            # A transaction without its COMMIT is dropped here and redelivered next run.
            self._flush(cursor, wait=True)
            if self._highest:
                cursor.send_feedback(flush_lsn=self._highest, force=True)
                self._settle_acknowledgment()
                self._record_position()
            self._prune()
        finally:
            if self._large is not None:  # no COMMIT came: the server redelivers it
                self._writer.send(_Abort())
                self._large = None
            conn.close()

    def _start_replication(self, cursor: Any) -> None:
        """Start streaming from the slot, acknowledging what is archived."""
        import psycopg2.errors

        try:
            cursor.start_replication(slot_name=self.slot, decode=False, options=OPTIONS)
        except psycopg2.errors.ObjectNotInPrerequisiteState as exc:
            # An invalidated slot ("can no longer get changes"), or one of another kind.
            raise SlotLost(str(exc).strip().splitlines()[0]) from None
        except psycopg2.errors.ObjectInUse as exc:
            # A logical slot admits one reader at a time: another run holds it. Only a run
            # that has not read anything yet steps aside; after a lost connection the old
            # walsender may still hold the slot for a moment, and that is retried.
            if self.stats.reconnects == 0:
                raise SlotBusy(str(exc).strip()) from None
            raise
        # What the server redelivers up to here is archived already: skipped.
        self._resume_from = self._highest
        # Acknowledge what is archived, so redelivery starts as late as possible.
        if self._highest:
            cursor.send_feedback(flush_lsn=self._highest, force=True)
        self._remove_leftovers()
        self._last_message = self.clock()

    def _read(self, conn: Any, cursor: Any) -> None:
        """Read the stream until the run stops (RunStats.stopped_by says why). The loop runs
        once per decoded change and touches locals only."""
        transaction = _Assembler(
            spill_bytes=self.spill_bytes,
            part_bytes=self.spill_part_bytes,
            start_large=lambda begin: self._start_large(begin, cursor),
            write_part=lambda changes: self._large_part(changes, last=False),
        )
        read = cursor.read_message
        begin, commit = transaction.begin, transaction.commit
        received = False
        while True:
            message = read()
            if message is None:
                if self._quiet(conn, cursor, open_transaction=transaction.open, received=received):
                    return
                received = False
                continue
            received = True
            payload: bytes = message.payload
            action = payload[11]
            if action == _BEGIN:
                begin(payload)
            elif action == _COMMIT:
                if self._commit(payload, commit(), cursor):
                    return
            else:
                transaction.add(payload)

    def _quiet(self, conn: Any, cursor: Any, *, open_transaction: bool, received: bool) -> bool:
        """Nothing to read at the moment: whether the run stops now. Waits for the stream,
        and makes what is pending durable once it has been quiet for QUIET_SECONDS."""
        if received:
            self._last_message = self.clock()
        if self._past_deadline():
            self.stats.stopped_by = "deadline"
            return True
        stop_lsn = self.stop_lsn
        if stop_lsn is not None and not open_transaction and cursor.wal_end >= stop_lsn:
            # The server has sent everything up to the stop position.
            self.stats.stopped_by = "stop_lsn"
            return True
        if self._writer.outstanding:
            self._acknowledge(cursor, wait=False)
        readable, _, _ = select.select([conn], [], [], QUIET_SECONDS)
        if readable:
            time.sleep(READ_BATCH_WAIT)
            return False
        # Quiet for a moment: make what is pending durable now (keeps lag low without writing
        # a segment per network read).
        self._flush(cursor, wait=True)
        if self.clock() - self._last_message >= self.idle_seconds:
            self.stats.stopped_by = "idle"
            return True
        return False

    def _commit(self, record: bytes, changes: list[bytes] | None, cursor: Any) -> bool:
        """A COMMIT record: archive its transaction (``changes``: what the assembler still
        holds; None without its BEGIN); whether the run stops at it (``stop_lsn``)."""
        if changes is None:
            return False
        xid, commit_time, commit_lsn, next_lsn = _commit_fields(record)
        end_lsn = parse_lsn(next_lsn)
        if end_lsn <= self._resume_from:
            self.stats.skipped += 1
        elif self._large is not None:
            self._large_part(changes, last=True)
            self._large = None
        else:
            line = transaction_line(xid, commit_lsn, end_lsn, commit_time, changes)
            pending = self._pending
            if not pending:
                self._first = Bound(end_lsn, commit_time)
            pending.append(line)
            self._pending_bytes += len(line)
            self._last_commit = (end_lsn, commit_time)
            if len(pending) >= self.batch_transactions or self._pending_bytes >= self.batch_bytes:
                self._flush(cursor, wait=False)
        if self.stop_lsn is not None and end_lsn >= self.stop_lsn:
            self.stats.stopped_by = "stop_lsn"
            return True
        return False

    def _start_large(self, begin: bytes, cursor: Any) -> bool:
        """Open the segment of the transaction whose BEGIN record is ``begin`` (it names the
        commit LSN, end LSN and commit time); False for one already archived."""
        xid, commit_time, commit_lsn, next_lsn = _commit_fields(begin)
        end_lsn = parse_lsn(next_lsn)
        if end_lsn <= self._resume_from:
            return False
        # Whatever is pending goes first: segments stay in commit order.
        self._flush(cursor, wait=False)
        bound = Bound(end_lsn, commit_time)
        batch = _Batch([], 0, bound, bound, large=True)
        self._writer.submit(batch)
        self._large = _LargeTransaction(xid, commit_lsn, end_lsn, commit_time, batch)
        self.stats.spilled += 1
        return True

    def _large_part(self, changes: list[bytes], *, last: bool) -> None:
        large = self._large
        assert large is not None
        head = transaction_head(
            large.xid, large.lsn, large.end_lsn, large.commit_time, large.parts, last=last
        )
        line = head + b",".join(changes) + b"]}\n"
        large.parts += 1
        large.batch.size += len(line)
        self._writer.send(_Part(line, last))

    def _record_position(self) -> None:
        """If the slot is confirmed past the archive's end, nothing for the archive was in
        between (every transaction received is archived and acknowledged by now; psycopg2
        moves the slot to the server's keepalive position only then): record it, so the next
        run does not take the slot's lead for a gap."""
        try:
            conn = self.connect_sql()
            try:
                with conn.cursor() as cursor:
                    state = slot_state(cursor, self.slot)
                conn.rollback()
            finally:
                conn.close()
            if state is not None and state.confirmed > self._highest:
                self.archive.record_position(state.confirmed, self._highest)
        except Exception as exc:  # the next run then records a gap: the safe side
            LOG.warning("could not record the slot's position past the archive's end: %s", exc)

    def _prune(self) -> None:
        """Remove the segments older than the retention (Archive.prune), and count them."""
        self.stats.archive_segments = len(self.archive.segments())
        if self.retention is None:
            return
        try:
            result = self.archive.prune(datetime.now(UTC) - self.retention - PRUNE_MARGIN)
        except (OSError, ArchiveError) as exc:
            # What was archived is durable and acknowledged: the run stands; the failure is
            # counted (PruneFailures) and the next run tries again.
            self.stats.prune_failures += 1
            LOG.error("pruning the archive failed (the next run retries): %s", exc)
            return
        self.stats.pruned_records += result.records
        self.stats.pruned_bytes += result.bytes
        self.stats.archive_segments = result.segments_kept
        if result.records:
            LOG.info(
                "pruned %d records (%d bytes) older than the retention; the chain now starts at %s",
                result.records,
                result.bytes,
                result.anchor,
            )

    def _remove_leftovers(self) -> None:
        """Once the slot is held (no other run writes now): remove what runs that died left."""
        if self._leftovers_checked:
            return
        self._leftovers_checked = True
        try:
            removed = remove_leftovers(self.archive.directory)
        except OSError as exc:  # not the archive's content: the run goes on
            LOG.warning("cannot remove temporary files of earlier runs: %s", exc)
            return
        if removed:
            LOG.info("removed %d temporary files of earlier runs", len(removed))

    def _flush(self, cursor: Any, *, wait: bool) -> None:
        """Hand what is pending to the writer; with ``wait``, until everything is durable."""
        if self._pending and self._first is not None and self._last_commit is not None:
            batch = _Batch(
                self._pending, self._pending_bytes, self._first, Bound(*self._last_commit)
            )
            # A new list: the batch now belongs to the writer thread.
            self._pending = []
            self._pending_bytes = 0
            self._first = self._last_commit = None
            self._writer.submit(batch)
        self._acknowledge(cursor, wait=wait)

    def _acknowledge(self, cursor: Any, *, wait: bool) -> None:
        """Account for durable segments and acknowledge the last one; raise a failed write."""
        durable = 0
        failure: ArchiveError | None = None
        for batch, result in self._writer.done(wait):
            if isinstance(result, ArchiveError):
                failure = failure or result
            elif result is not None:  # None: discarded unwritten after a failure
                self.stats.transactions += batch.count
                self.stats.bytes += batch.size
                self.stats.segments += 1
                self.stats.last_commit_time = batch.last.commit_time
                self._highest = self.stats.last_end_lsn = durable = result.last_end_lsn
        if durable and cursor is not None:
            cursor.send_feedback(flush_lsn=durable, force=True)
        if failure is not None:
            if cursor is not None:
                self._settle_acknowledgment()
            raise failure

    def _settle_acknowledgment(self) -> None:
        """Wait (briefly) until the server has applied the last acknowledgment.

        A client that closes its replication connection while the server is still streaming
        leaves unread data behind: its kernel answers with a reset, and the server's kernel may
        discard the acknowledgment the walsender had not read yet. The archive is then still
        whole (the next run skips what it already holds), but the slot keeps WAL it need not.
        The walsender reads replies while it sends, so this wait is short.
        """
        if not self._highest:
            return
        wanted = format_lsn(self._highest)
        deadline = time.monotonic() + SETTLE_SECONDS
        try:
            conn = self.connect_sql()
        except Exception:  # best effort: the acknowledgment is an optimisation, not the archive
            return
        try:
            with conn.cursor() as cur:
                while True:
                    cur.execute(
                        "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                        "WHERE slot_name = %s",
                        (wanted, self.slot),
                    )
                    row = cur.fetchone()
                    conn.rollback()
                    if row is None or row[0] or time.monotonic() >= deadline:
                        return
                    time.sleep(0.02)
        except Exception:
            return
        finally:
            conn.close()


__all__ = [
    "SLOT_BUSY",
    "ArchiveError",
    "Archiver",
    "RunStats",
    "SlotInvalidated",
    "SlotState",
    "ensure_slot",
    "server_identity",
    "slot_state",
]
