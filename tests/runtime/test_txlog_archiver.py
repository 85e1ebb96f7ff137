"""The transaction-log archiver against a real PostgreSQL 15 with wal2json."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

from govdr.cli.main import main
from govdr.txlog.runtime.archive import (
    MANIFEST,
    POSITION_RE,
    Archive,
    ArchiveError,
    Bound,
    Segment,
    format_lsn,
    parse_commit_time,
    parse_lsn,
    transaction_line,
)
from govdr.txlog.runtime.archiver import WRITER_NICE, Archiver, _Batch, _SegmentWriter
from tests.conftest import ROOT
from tests.runtime.conftest import SLOT, WITNESS, Db
from tests.support.archive_keys import key_file, keyring, writable_archive
from tests.support.pgcluster import Postgres, start_cluster, stop_cluster


def archived_xids(directory: Path) -> list[int]:
    return [txn["xid"] for txn in Archive(directory).transactions()]


def test_lsn_round_trip() -> None:
    for text in ("0/0", "0/1527E98", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        assert format_lsn(parse_lsn(text)) == text


def write_and_check_a_segment(directory: Path) -> None:
    """Write 3,000 lines as one segment and check the file holds exactly them."""
    lines = [b'{"xid":%d,"changes":[]}\n' % i for i in range(3000)]
    segment = writable_archive(directory).write_segment(
        lines, Bound(1, "2026-11-22 00:00:00+00"), Bound(2, "2026-11-22 00:00:01+00")
    )
    data, joined = segment.path.read_bytes(), b"".join(lines)
    assert data[: len(joined)] == joined
    assert data[len(joined) :].startswith(b'{"seal":') and data.endswith(b"}\n")


def test_a_short_gathered_write_is_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writev may write less than asked (the kernel's choice); the rest must still follow."""
    real_write = os.write
    # Writes all but the last 3 bytes of the first buffer, and says so.
    monkeypatch.setattr(os, "writev", lambda fd, buffers: real_write(fd, buffers[0][:-3]))
    write_and_check_a_segment(tmp_path)


def test_a_segment_is_written_in_short_system_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long writev calls keep the reading thread off the CPU while the server's sender waits."""
    writable_archive(tmp_path)  # its manifest is written before the calls are counted
    real_writev = os.writev
    sizes: list[int] = []

    def recording_writev(fd: int, buffers: list[bytes]) -> int:
        sizes.append(len(buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", recording_writev)
    write_and_check_a_segment(tmp_path)
    assert sum(sizes) == 3001 and max(sizes) <= 64  # the lines and the seal


def test_the_segment_writer_yields_the_cpu_to_the_reading_thread(tmp_path: Path) -> None:
    seen: dict[str, int] = {}

    class Recording(Archive):
        def write_segment(self, lines: list[bytes], first: Bound, last: Bound) -> Segment:
            seen["writer"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            return super().write_segment(lines, first, last)

    reader = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    writer = _SegmentWriter(writable_archive(tmp_path, archive=Recording(tmp_path)))
    try:
        writer.submit(
            _Batch(
                [b"{}\n"], 3, Bound(1, "2026-11-22 00:00:00+00"), Bound(1, "2026-11-22 00:00:00+00")
            )
        )
        [(_, result)] = writer.done(wait=True)
    finally:
        writer.close()
    assert isinstance(result, Segment)
    assert seen["writer"] == WRITER_NICE == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == reader < 19


def test_every_committed_transaction_exactly_once_in_commit_order(db: Db, tmp_path: Path) -> None:
    db.pg.pgbench("-i", "-s", "1", "-q", dbname=db.name)
    db.create_slots()
    db.sql("BEGIN; INSERT INTO ledger(note) VALUES ('rolled-back-marker'); ROLLBACK;")
    db.pg.pgbench("-n", "-c", "2", "-j", "2", "-t", "300", dbname=db.name)
    db.sql("INSERT INTO ledger(note) VALUES ('committed-marker')")

    stats = db.archiver(tmp_path, batch_transactions=100, idle_seconds=0.5).run()

    expected = db.witness_xids()
    assert len(expected) == 601
    assert archived_xids(tmp_path) == expected
    assert stats.transactions == 601
    assert stats.segments >= 7
    text = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"committed-marker" in text
    assert b"rolled-back-marker" not in text
    # The slot was acknowledged up to the last archived commit, and not beyond.
    assert parse_lsn(db.confirmed_flush()) == Archive(tmp_path).highest_end_lsn()
    # Nothing new: a second run archives nothing and drops nothing.
    again = db.archiver(tmp_path, idle_seconds=0.3).run()
    assert (again.transactions, again.skipped) == (0, 0)


def _run_cli(db: Db, directory: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        db.cli_command(directory, *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_kill_minus_9_at_ten_random_points_loses_and_duplicates_nothing(
    db: Db, tmp_path: Path
) -> None:
    db.pg.pgbench("-i", "-s", "1", "-q", dbname=db.name)
    db.create_slots()
    load = threading.Thread(
        target=db.pg.pgbench,
        args=("-n", "-c", "2", "-j", "2", "-t", "1500"),
        kwargs={"dbname": db.name},
    )
    load.start()
    rng = random.Random(20261122)
    kills = 0
    while kills < 10:
        proc = _run_cli(db, tmp_path, "--batch", "40", "--idle", "5")
        time.sleep(rng.uniform(0.4, 1.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
    load.join()
    final = _run_cli(db, tmp_path, "--batch", "40", "--idle", "1")
    _out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    expected = db.witness_xids()
    assert len(expected) == 3000
    got = archived_xids(tmp_path)
    assert len(got) == len(set(got)), "duplicated transactions"
    assert got == expected, "lost or reordered transactions"
    # No temporary file survives as a segment, and leftovers are only hidden temporaries.
    assert all(
        p.name.endswith(".jsonl")
        or p.name.startswith(".")
        or p.name == MANIFEST
        or POSITION_RE.match(p.name)  # where an idle slot was confirmed (record_position)
        for p in tmp_path.iterdir()
    )


def test_postgres_restart_mid_run_resumes_with_nothing_lost(db: Db, tmp_path: Path) -> None:
    db.create_slots()
    for i in range(4):
        db.sql(f"INSERT INTO ledger(note) VALUES ('before-{i}')")
    db.sql("INSERT INTO ledger(note) SELECT 'bulk-' || g FROM generate_series(1, 10) g")
    archiver = db.archiver(tmp_path, batch_transactions=1, idle_seconds=6.0)
    result: dict[str, object] = {}
    runner = threading.Thread(target=lambda: result.update(stats=archiver.run()))
    runner.start()
    time.sleep(1.0)
    db.pg.restart()
    for i in range(20):
        db.sql(f"INSERT INTO ledger(note) VALUES ('after-restart-{i}')")
    runner.join(timeout=120)
    assert not runner.is_alive()
    stats = result["stats"]
    assert stats.reconnects >= 1  # type: ignore[attr-defined]
    assert archived_xids(tmp_path) == db.witness_xids()
    assert len(archived_xids(tmp_path)) == 4 + 1 + 20


def test_a_transaction_larger_than_a_batch_stays_whole(db: Db, tmp_path: Path) -> None:
    db.create_slots()
    db.sql("INSERT INTO ledger(note) SELECT repeat('x', 200) FROM generate_series(1, 20000)")
    stats = db.archiver(
        tmp_path, batch_transactions=2, batch_bytes=64 * 1024, idle_seconds=0.5
    ).run()
    [txn] = list(Archive(tmp_path).transactions())
    assert len(txn["changes"]) == 20000
    assert stats.transactions == 1


def test_an_empty_slot_archives_nothing(db: Db, tmp_path: Path) -> None:
    db.create_slots()
    before = db.confirmed_flush()
    stats = db.archiver(tmp_path, idle_seconds=0.3).run()
    assert (stats.transactions, stats.segments, stats.stopped_by) == (0, 0, "idle")
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]
    assert db.confirmed_flush() == before


def test_read_only_archive_is_a_clear_error_and_the_slot_stays(db: Db, tmp_path: Path) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir()
    # A read-only mount: refused even to root, as an EFS mount without write access would be.
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(readonly)], check=True
    )
    try:
        db.create_slots()
        db.sql("INSERT INTO ledger(note) VALUES ('pending')")
        before = db.confirmed_flush()
        proc = _run_cli(db, readonly, "--idle", "0.5")
        _, err = proc.communicate(timeout=120)
        message = err.decode()
        assert proc.returncode == 2, message
        assert "is not writable" in message
        assert "replication slot was not advanced" in message
        assert "Traceback" not in message
        assert db.confirmed_flush() == before
    finally:
        subprocess.run(["umount", str(readonly)], check=False)


def test_full_archive_is_a_clear_error_and_the_slot_stays(db: Db, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
    try:
        db.create_slots()
        db.sql("INSERT INTO ledger(note) SELECT repeat('y', 500) FROM generate_series(1, 2000)")
        before = db.confirmed_flush()
        with pytest.raises(ArchiveError, match="No space left on device"):
            db.archiver(full, idle_seconds=0.5).run()
        assert db.confirmed_flush() == before
        assert [p.name for p in full.iterdir() if not p.name.startswith(".")] == [MANIFEST]
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_archive_filling_up_mid_run_keeps_a_gap_free_prefix(db: Db, tmp_path: Path) -> None:
    """Segments are written behind the reader: a write that fails after earlier ones succeeded
    must leave exactly those earlier segments, acknowledged up to their end and no further, and
    no later segment (which would leave a hole in the archive)."""
    full = tmp_path / "filling"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(full)], check=True)
    try:
        db.create_slots()
        for _ in range(40):
            db.sql("INSERT INTO ledger(note) SELECT repeat('z', 400) FROM generate_series(1, 5)")
        with pytest.raises(ArchiveError, match="No space left on device"):
            db.archiver(full, batch_transactions=2, idle_seconds=0.5).run()
        archived = archived_xids(full)
        expected = db.witness_xids()
        assert 0 < len(archived) < len(expected)
        assert archived == expected[: len(archived)]
        assert parse_lsn(db.confirmed_flush()) == Archive(full).highest_end_lsn()
        assert [p for p in full.iterdir() if p.name.startswith(".")] == []

        # With room again, the next run continues exactly where the archive ends.
        roomy = tmp_path / "roomy"
        shutil.copytree(full, roomy)
        shutil.copy2(key_file(full), key_file(roomy))
        stats = db.archiver(roomy, batch_transactions=2, idle_seconds=0.5).run()
        assert archived_xids(roomy) == expected
        assert stats.transactions == len(expected) - len(archived)
    finally:
        subprocess.run(["umount", str(full)], check=False)


class _FailsOnce(Archive):
    """An archive whose third segment write fails once with ``error``; later writes work."""

    def __init__(self, directory: Path, error: Exception) -> None:
        super().__init__(directory)
        self.calls = 0
        self.error = error

    def write_segment(self, lines: list[bytes], first: Bound, last: Bound) -> Segment:
        self.calls += 1
        if self.calls == 3:
            raise self.error
        return super().write_segment(lines, first, last)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ArchiveError("cannot write segment: Input/output error"), "Input/output error"),
        # Not an ArchiveError: the writer thread must still report it, not die silently and
        # leave the reading thread waiting for a result that never comes.
        (ValueError("unparsable commit time"), "cannot write segment: ValueError"),
    ],
)
def test_no_segment_is_written_after_a_failed_one(
    db: Db, tmp_path: Path, error: Exception, message: str
) -> None:
    db.create_slots()
    for _ in range(30):
        db.sql("INSERT INTO ledger(note) VALUES ('one')")
    archiver = db.archiver(tmp_path, batch_transactions=2, idle_seconds=0.5)
    archiver.archive = archive = _FailsOnce(tmp_path, error)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            archiver.run()
        except ArchiveError as exc:
            raised.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the run hangs after a failed write"
    assert len(raised) == 1 and message in str(raised[0])
    assert archive.calls == 3  # the writes queued behind the failed one were discarded
    expected = db.witness_xids()
    assert archived_xids(tmp_path) == expected[:4]
    assert parse_lsn(db.confirmed_flush()) == Archive(tmp_path).highest_end_lsn()

    stats = db.archiver(tmp_path, batch_transactions=2, idle_seconds=0.5).run()
    assert archived_xids(tmp_path) == expected
    assert (stats.transactions, stats.skipped) == (len(expected) - 4, 0)


def test_cli_prints_the_run_as_json(db: Db, tmp_path: Path) -> None:
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('one')")
    proc = _run_cli(db, tmp_path, "--idle", "0.5")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    stats = json.loads(out)
    assert stats["transactions"] == 1
    assert stats["stopped_by"] == "idle"


# Issue 18: the archive knows whose it is and refuses what is not its own.

STRAY = "FFFFFFFFFFFFFFF0-FFFFFFFFFFFFFFF0_20261122T000000000000Z_20261122T000000000000Z.jsonl"


def _fake_segment(directory: Path, first: int, last: int, name_times: str | None = None) -> Path:
    """A file named and filled like a segment, covering end LSNs ``first``..``last``, but not
    sealed (not written by the archiver)."""
    times = name_times or "20261122T000000000000Z_20261122T000000000000Z"
    path = directory / f"{first:016X}-{last:016X}_{times}.jsonl"
    lines = [
        json.dumps({"xid": 1, "lsn": "0/0", "end_lsn": lsn, "commit_time": "x", "changes": []})
        for lsn in sorted({first, last})
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _sealed_segment(directory: Path, first: int, last: int, content_lsns: list[int]) -> Path:
    """A segment sealed with the archive's own key (as only the archiver, or whoever holds the
    key, can write), named ``first``..``last`` and holding transactions ending at
    ``content_lsns``."""
    stamp = "2026-11-22 00:00:00+00"
    lines = [transaction_line(1, "0/0", lsn, stamp, []) for lsn in content_lsns]
    return (
        writable_archive(directory)
        .write_segment(lines, Bound(first, stamp), Bound(last, stamp))
        .path
    )


def _ledger_notes(directory: Path) -> list[str]:
    return [
        column
        for txn in Archive(directory).transactions()
        for change in txn["changes"]
        for column in (c.get("value") for c in change.get("columns", []))
        if isinstance(column, str)
    ]


def test_item_3_a_stray_file_name_does_not_switch_the_archive_off(db: Db, tmp_path: Path) -> None:
    """Item 3: an empty file named FFFFFFFFFFFFFFF0-FFFFFFFFFFFFFFF0_...jsonl made every later
    transaction 'skipped' and moved the slot to FFFFFFFF/FFFFFFF0. Now the run is refused with
    the file named, the slot stays where it was, and nothing is skipped once the file is gone."""
    db.create_slots()
    db.archiver(tmp_path, idle_seconds=0.3).run()  # an archive (manifest, key), still empty
    for i in range(3):
        db.sql(f"INSERT INTO ledger(note) VALUES ('after-stray-{i}')")
    (tmp_path / STRAY).touch()
    before = db.confirmed_flush()
    with pytest.raises(ArchiveError) as refused:
        db.archiver(tmp_path, idle_seconds=0.3).run()
    assert STRAY in str(refused.value)
    assert "move it out of the archive directory" in str(refused.value)
    assert db.confirmed_flush() == before
    (tmp_path / STRAY).unlink()
    stats = db.archiver(tmp_path, idle_seconds=0.3).run()
    assert (stats.transactions, stats.skipped) == (3, 0)
    assert archived_xids(tmp_path) == db.witness_xids()


def test_item_3_a_segment_beyond_the_servers_wal_end_is_refused(db: Db, tmp_path: Path) -> None:
    """Item 3: a well-formed segment whose LSNs lie beyond the server's current WAL position was
    taken as the archive's end: later transactions were skipped and the slot was acknowledged
    past the server's WAL. Now: refused, slot unchanged, nothing acknowledged."""
    db.create_slots()
    db.archiver(tmp_path, idle_seconds=0.3).run()  # an archive (manifest, key), still empty
    db.sql("INSERT INTO ledger(note) VALUES ('after-future')")
    # Sealed with the archive's key: only the WAL position check can refuse it.
    end = 0xFFFFFFFFFFFFFFF0
    future = _sealed_segment(tmp_path, end, end, [end])
    before = db.confirmed_flush()
    with pytest.raises(ArchiveError, match="beyond the server's current WAL position") as refused:
        db.archiver(tmp_path, idle_seconds=0.3).run()
    assert future.name in str(refused.value)
    assert db.confirmed_flush() == before
    future.unlink()
    stats = db.archiver(tmp_path, idle_seconds=0.3).run()
    assert (stats.transactions, stats.skipped) == (1, 0)


def test_item_3_a_last_segment_whose_content_differs_from_its_name_is_refused(
    db: Db, tmp_path: Path
) -> None:
    """Item 3: the archive's end came from the last file name alone. A name claiming more than
    the file holds (here: up to the server's current position) now stops the run unacknowledged."""
    db.create_slots()
    db.archiver(tmp_path, idle_seconds=0.3).run()  # an archive (manifest, key), still empty
    db.sql("INSERT INTO ledger(note) VALUES ('x')")
    wal_end = parse_lsn(db.sql("SELECT pg_current_wal_lsn()"))
    # Named 1..<current WAL position>, holding a single transaction that ends at 1, and
    # sealed with the archive's key: the name's range is checked against the content.
    _sealed_segment(tmp_path, 1, wal_end, [1])
    before = db.confirmed_flush()
    with pytest.raises(ArchiveError, match="the name says end LSNs"):
        db.archiver(tmp_path, idle_seconds=0.3).run()
    assert db.confirmed_flush() == before


def test_item_2_the_manifest_names_server_timeline_database_and_slot(
    db: Db, tmp_path: Path
) -> None:
    """Item 2: the archive knew no server identity, timeline, database or slot."""
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('x')")
    db.archiver(tmp_path, idle_seconds=0.3).run()
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert {k: v for k, v in manifest.items() if k not in ("key", "mac")} == {
        "system_identifier": db.sql("SELECT system_identifier FROM pg_control_system()"),
        "timeline": int(db.sql("SELECT timeline_id FROM pg_control_checkpoint()")),
        "database": db.name,
        "slot": SLOT,
    }
    # The key record and the manifest's MAC (govdr/txlog/runtime/integrity.py).
    assert manifest["key"] == {"key_file": key_file(tmp_path).name}
    assert len(manifest["mac"]) == 64


def test_item_2_another_slot_or_database_is_refused(
    db: Db, postgres: Postgres, tmp_path: Path
) -> None:
    """Item 2: any slot of any database could continue any archive, skipping what it sent at
    or below the archive's end. Now the manifest's database and slot must match."""
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('x')")
    db.archiver(tmp_path, idle_seconds=0.3).run()
    listing = sorted(p.name for p in tmp_path.iterdir())
    # Slot names are per cluster: the other database gets the same names once these are gone.
    db.wait_until_slots_inactive()
    db.sql(f"SELECT pg_drop_replication_slot('{SLOT}')")
    db.sql(f"SELECT pg_drop_replication_slot('{WITNESS}')")
    other = Db(postgres)
    try:
        other.sql("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text)")
        other.create_slots()
        other.sql("INSERT INTO ledger(note) VALUES ('other-db')")
        before = other.confirmed_flush()
        with pytest.raises(ArchiveError, match=f"database '{db.name}'"):
            other.archiver(tmp_path, idle_seconds=0.3).run()
        assert other.confirmed_flush() == before
    finally:
        other.drop()
    renamed = Archiver(
        archive=Archive(tmp_path),
        keyring=keyring(tmp_path),
        slot="govdr_txlog_other",
        connect_sql=lambda: psycopg2.connect(db.dsn),
        connect_replication=lambda: psycopg2.connect(
            db.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
        ),
        idle_seconds=0.3,
    )
    with pytest.raises(ArchiveError, match="slot 'govdr_txlog'"):
        renamed.run()
    # Refused before the slot was created.
    assert (
        db.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'govdr_txlog_other'")
        == "0"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_item_2_another_servers_archive_is_refused_never_skipped(db: Db, tmp_path: Path) -> None:
    """Item 2: after a restore into a new instance (lower LSNs) the new server's transactions
    were counted 'skipped' and its slot was moved past its own WAL end. Archive of server A,
    then a new cluster B: refused by the manifest (another system identifier) and, for an
    archive without a manifest, by its end lying beyond B's WAL; B's slot never moves."""
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('on-a')")
    for _ in range(3):  # A's archive ends well past where a fresh cluster's WAL is
        db.sql("SELECT pg_switch_wal()")
        db.sql("INSERT INTO ledger(note) VALUES ('on-a')")
    db.archiver(tmp_path, idle_seconds=0.3).run()
    legacy = tmp_path.parent / "legacy"
    shutil.copytree(tmp_path, legacy)
    (legacy / MANIFEST).unlink(missing_ok=True)
    server_b = start_cluster()
    try:
        b = Db(server_b)
        b.sql("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text)")
        b.create_slots()
        b.sql("INSERT INTO ledger(note) VALUES ('on-b')")
        before = b.confirmed_flush()
        with pytest.raises(ArchiveError, match="system_identifier"):
            b.archiver(tmp_path, idle_seconds=0.3).run()
        # Without its manifest the archive cannot be verified, so it is never extended.
        with pytest.raises(ArchiveError, match="but no manifest"):
            b.archiver(legacy, idle_seconds=0.3).run()
        assert b.confirmed_flush() == before
        # Into its own directory B archives everything, nothing skipped.
        own = tmp_path.parent / "b"
        own.mkdir()
        stats = b.archiver(own, idle_seconds=0.3).run()
        assert (stats.transactions, stats.skipped) == (1, 0)
    finally:
        stop_cluster(server_b)


def test_item_2_a_recreated_slot_records_a_gap_instead_of_skipping(db: Db, tmp_path: Path) -> None:
    """Item 2: a dropped and recreated slot lost what was committed in between, and archiver and
    replay reported success. Now the run records the gap (file, count, error line)."""
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('archived')")
    db.archiver(tmp_path, idle_seconds=0.3).run()
    end = Archive(tmp_path).highest_end_lsn()
    db.wait_until_slots_inactive()
    db.sql(f"SELECT pg_drop_replication_slot('{SLOT}')")
    db.sql("INSERT INTO ledger(note) VALUES ('committed-without-a-slot')")
    stats = db.archiver(tmp_path, idle_seconds=0.3).run()
    resume = parse_lsn(
        db.sql(f"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{SLOT}'")
    )
    gaps = sorted(p.name for p in tmp_path.glob("gap_*.json"))
    assert stats.gaps == 1
    assert len(gaps) == 1 and gaps[0].startswith(f"gap_{end:016X}-")
    assert Archive(tmp_path).gaps()[0][0] == end
    assert "created for a non-empty archive" in (tmp_path / gaps[0]).read_text()
    assert "committed-without-a-slot" not in _ledger_notes(tmp_path)
    # Archiving goes on after the gap.
    db.sql("INSERT INTO ledger(note) VALUES ('after-gap')")
    again = db.archiver(tmp_path, idle_seconds=0.3).run()
    assert (again.transactions, again.skipped, again.gaps) == (1, 0, 0)
    assert _ledger_notes(tmp_path)[-1] == "after-gap"
    assert resume >= end


def test_item_2_a_slot_advanced_past_the_archive_records_a_gap(db: Db, tmp_path: Path) -> None:
    """Item 2: a slot moved past the archive's end (by anyone) silently lost what it passed."""
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('archived')")
    db.archiver(tmp_path, idle_seconds=0.3).run()
    end = Archive(tmp_path).highest_end_lsn()
    db.wait_until_slots_inactive()
    db.sql("INSERT INTO ledger(note) VALUES ('passed-over')")
    db.sql(f"SELECT pg_replication_slot_advance('{SLOT}', pg_current_wal_lsn())")
    advanced = parse_lsn(db.confirmed_flush())
    stats = db.archiver(tmp_path, idle_seconds=0.3).run()
    assert stats.gaps == 1
    assert Archive(tmp_path).gaps() == [(end, advanced)]
    assert "passed-over" not in _ledger_notes(tmp_path)


def test_item_9_segment_names_carry_utc_whatever_the_servers_timezone(
    db: Db, tmp_path: Path
) -> None:
    """Item 9: with the server's TimeZone not UTC, segment names carried local time labelled Z,
    so --start-time/--until missed transactions."""
    db.pg.psql(f"ALTER DATABASE {db.name} SET timezone = 'America/New_York'")
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('new-york')")
    committed = db.sql(
        "SELECT to_char(timestamp AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISSUS') "
        "FROM pg_last_committed_xact()"
    )
    db.archiver(tmp_path, idle_seconds=0.3).run()
    [segment] = Archive(tmp_path).segments()
    [txn] = list(segment.transactions())
    assert txn["commit_time"].endswith(("-05", "-04"))  # wal2json wrote New York time
    assert segment.path.name.split("_")[1] == committed + "Z"
    assert segment.first_commit == parse_commit_time(txn["commit_time"])


def test_item_13_parse_lsn_rejects_malformed_input() -> None:
    """Item 13: parse_lsn accepted -1/5 (and other malformed positions)."""
    for bad in (
        "-1/5",
        "1/-5",
        "1/",
        "/5",
        "15",
        "G/1",
        "1/5 ",
        " 1/5",
        "123456789/0",
        "0x1/5",
        "",
    ):
        with pytest.raises(ValueError, match="is not an LSN"):
            parse_lsn(bad)


def test_item_13_an_invalid_date_in_a_segment_name_is_a_clear_error(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 13: a segment with an invalid date in its name stopped the archiver and every
    command with a traceback."""
    bad = _fake_segment(tmp_path, 1, 1, "20261399T000000000000Z_20261399T000000000000Z")
    with pytest.raises(ArchiveError, match="not valid dates") as refused:
        Archive(tmp_path).segments()
    assert bad.name in str(refused.value)
    db.create_slots()
    before = db.confirmed_flush()
    with pytest.raises(ArchiveError, match="not valid dates"):
        db.archiver(tmp_path, idle_seconds=0.3).run()
    assert db.confirmed_flush() == before
    assert main(["txlog", "list", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert bad.name in err and "not valid dates" in err and "Traceback" not in err


def test_item_13_a_symlink_at_a_segments_name_is_never_followed(tmp_path: Path) -> None:
    """Item 13: segment files were created without O_EXCL|O_NOFOLLOW: a symlink planted at the
    (predictable) temporary name made the archiver write through it into another file."""
    outside = tmp_path / "outside"
    outside.write_text("not the archive's\n")
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    first, last = Bound(1, "2026-11-22 00:00:00+00"), Bound(2, "2026-11-22 00:00:01+00")
    name = "0000000000000001-0000000000000002_20261122T000000000000Z_20261122T000001000000Z.jsonl"
    (archive_dir / f".{name}.tmp").symlink_to(outside)
    archive = writable_archive(archive_dir)
    segment = archive.write_segment([b'{"end_lsn":1}\n'], first, last)
    assert segment.path.name == name and not segment.path.is_symlink()
    assert outside.read_text() == "not the archive's\n"
    # A symlink at the segment's own name is neither followed nor replaced.
    segment.path.unlink()
    (archive_dir / name).symlink_to(outside)
    with pytest.raises(ArchiveError, match="already exists and is never replaced"):
        archive.write_segment([b'{"end_lsn":1}\n'], first, last)
    assert (archive_dir / name).is_symlink()
    assert outside.read_text() == "not the archive's\n"
