"""The transaction-log archiver against a real PostgreSQL 15 with wal2json."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runtime.txlog_archiver.archive import (
    Archive,
    ArchiveError,
    Bound,
    Segment,
    format_lsn,
    parse_lsn,
)
from runtime.txlog_archiver.archiver import WRITER_NICE, _Batch, _SegmentWriter
from tests.conftest import ROOT
from tests.runtime.conftest import SLOT, Db


def archived_xids(directory: Path) -> list[int]:
    return [txn["xid"] for txn in Archive(directory).transactions()]


def test_lsn_round_trip() -> None:
    for text in ("0/0", "0/1527E98", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        assert format_lsn(parse_lsn(text)) == text


def write_and_check_a_segment(directory: Path) -> None:
    """Write 3,000 lines as one segment and check the file holds exactly them."""
    lines = [b'{"xid":%d,"changes":[]}\n' % i for i in range(3000)]
    segment = Archive(directory).write_segment(
        lines, Bound(1, "2026-11-22 00:00:00+00"), Bound(2, "2026-11-22 00:00:01+00")
    )
    assert segment.path.read_bytes() == b"".join(lines)


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
    real_writev = os.writev
    sizes: list[int] = []

    def recording_writev(fd: int, buffers: list[bytes]) -> int:
        sizes.append(len(buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", recording_writev)
    write_and_check_a_segment(tmp_path)
    assert sum(sizes) == 3000 and max(sizes) <= 64


def test_the_segment_writer_yields_the_cpu_to_the_reading_thread(tmp_path: Path) -> None:
    seen: dict[str, int] = {}

    class Recording(Archive):
        def write_segment(self, lines: list[bytes], first: Bound, last: Bound) -> Segment:
            seen["writer"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            return super().write_segment(lines, first, last)

    reader = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    writer = _SegmentWriter(Recording(tmp_path))
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
        [
            sys.executable,
            "-m",
            "runtime.txlog_archiver",
            "--dsn",
            db.dsn,
            "--dir",
            str(directory),
            "--slot",
            SLOT,
            *extra,
        ],
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
    assert all(p.name.endswith(".jsonl") or p.name.startswith(".") for p in tmp_path.iterdir())


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
    assert list(tmp_path.iterdir()) == []
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
        assert [p for p in full.iterdir() if not p.name.startswith(".")] == []
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
