"""Retention: segments older than the recovery window are pruned, oldest first, never the newest
record; the chain stays verifiable from a sealed prune anchor; an interrupted prune is finished
by the next; a forged or missing anchor is named; replay refuses a restore point older than what
was pruned and replays from after it; the archiver prunes at the end of its run, while it holds
the slot, and reports what it pruned."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from govdr.cli.main import main as govdr_main
from govdr.txlog.runtime.archive import (
    PRUNED_RE,
    Archive,
    ArchiveError,
    Bound,
    format_lsn,
    transaction_line,
)
from govdr.txlog.runtime.archiver import PRUNE_MARGIN
from govdr.txlog.runtime.handler import Settings
from govdr.txlog.runtime.replay import ReplayGap, Window, replay
from tests.runtime.conftest import Db
from tests.support.archive_keys import archive_key, key_file, writable_archive

NOW = datetime.now(UTC)


def _row(n: int) -> bytes:
    return (
        b'{"action":"I","schema":"public","table":"ledger","columns":[{"name":"id",'
        b'"type":"bigint","value":%d},{"name":"note","type":"text","value":"r"}]}' % n
    )


def _build(directory: Path, ages_days: list[float], gap_after: int | None = None) -> Archive:
    """One segment per age (days before now, oldest first), each one transaction of one row;
    with ``gap_after``, a recorded gap after that segment."""
    directory.mkdir()
    archive = writable_archive(directory)
    lsn = 0x1000
    for n, age in enumerate(ages_days):
        stamp = (NOW - timedelta(days=age)).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        end = lsn + 0x10
        line = transaction_line(100 + n, format_lsn(lsn), end, stamp, [_row(n + 1)])
        archive.write_segment([line], Bound(end, stamp), Bound(end, stamp))
        if n == gap_after:
            archive.record_gap(end, end + 0x100, "a test gap", stamp)
            lsn = end + 0x100
        lsn += 0x100
    return archive


def _reopened(directory: Path) -> Archive:
    """The archive as the next run sees it: its chain opened with its key."""
    return writable_archive(directory, archive=Archive(directory))


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.control("CP-9")
def test_old_segments_are_pruned_and_the_chain_still_verifies(tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    archive = _build(directory, [40, 30, 20, 5, 1])
    before = archive.verify(archive_key(directory))
    result = archive.prune(NOW - timedelta(days=15))
    assert (result.records, result.segments_kept) == (3, 2)
    assert result.bytes > 0 and result.anchor is not None
    report = _reopened(directory).verify(archive_key(directory))
    assert (report.segments, report.transactions) == (2, 2)
    assert report.last_end_lsn == before.last_end_lsn
    assert report.pruned_through_end_lsn == int(result.anchor[7:23], 16)
    # Twin: a cutoff before every segment prunes nothing and writes no anchor.
    twin = _build(tmp_path / "twin", [40, 30, 20])
    assert twin.prune(NOW - timedelta(days=50)).records == 0
    assert not [n for n in _names(tmp_path / "twin") if PRUNED_RE.match(n)]


def test_the_newest_record_is_never_pruned_and_the_chain_goes_on(tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    archive = _build(directory, [40, 30])
    result = archive.prune(NOW + timedelta(days=1))  # everything is older than the cutoff
    assert (result.records, result.segments_kept) == (1, 1)
    again = _reopened(directory)  # the next run: the tail verifies against the anchor
    stamp = NOW.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    line = transaction_line(999, "0/9000", 0x9010, stamp, [_row(99)])
    again.write_segment([line], Bound(0x9010, stamp), Bound(0x9010, stamp))
    report = Archive(directory).verify(archive_key(directory))
    assert (report.segments, report.transactions) == (2, 2)
    # A second prune moves the anchor: one anchor remains, the chain still verifies.
    _reopened(directory).prune(NOW + timedelta(days=1))
    assert len([n for n in _names(directory) if PRUNED_RE.match(n)]) == 1
    assert Archive(directory).verify(archive_key(directory)).segments == 1


def test_gap_records_among_the_old_segments_go_with_them(tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    archive = _build(directory, [40, 30, 20, 1], gap_after=1)
    assert any(n.startswith("gap_") for n in _names(directory))
    assert archive.prune(NOW - timedelta(days=15)).records == 4  # three segments and the gap
    assert not any(n.startswith("gap_") for n in _names(directory))
    assert Archive(directory).verify(archive_key(directory)).gaps == []
    # Twin: a gap right after the last pruned segment stays (it is the chain's next link).
    kept = _build(tmp_path / "kept", [40, 30, 1], gap_after=1)
    kept.prune(NOW - timedelta(days=15))
    report = Archive(tmp_path / "kept").verify(archive_key(tmp_path / "kept"))
    assert len(report.gaps) == 1


def test_an_interrupted_prune_is_finished_by_the_next(tmp_path: Path) -> None:
    """The anchor is written before anything is removed: records it covers that are still
    there (the run died) are outside the chain, and the next prune removes them."""
    directory = tmp_path / "archive"
    archive = _build(directory, [40, 30, 20, 1])
    saved = tmp_path / "saved"
    shutil.copytree(directory, saved)
    result = archive.prune(NOW - timedelta(days=15))
    for name in _names(saved):  # as if the removals had not happened
        if not (directory / name).exists() and not PRUNED_RE.match(name):
            shutil.copy2(saved / name, directory / name)
    report = Archive(directory).verify(archive_key(directory))
    assert report.segments == 1
    assert _reopened(directory).prune(NOW - timedelta(days=15)).records == result.records
    assert Archive(directory).verify(archive_key(directory)).segments == 1


def _verify_cli(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = govdr_main(
        ["txlog", "verify", "--dir", str(directory), "--key-file", str(key_file(directory))]
    )
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


@pytest.mark.control("CP-9")
def test_a_forged_removed_or_replaced_anchor_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "archive"
    archive = _build(directory, [40, 30, 20, 1])
    anchor = directory / str(archive.prune(NOW - timedelta(days=15)).anchor)
    code, out = _verify_cli(directory, capsys)
    assert code == 0 and "pruned up to" in out
    body = json.loads(anchor.read_text())
    # Forged: it names another MAC (to hide a removed record after it); its seal fails.
    anchor.write_text(json.dumps({**body, "last_mac": "0" * 64}))
    code, out = _verify_cli(directory, capsys)
    assert code == 1 and anchor.name in out and "does not verify" in out
    # Removed: the first kept record no longer follows anything the chain starts from.
    anchor.unlink()
    code, out = _verify_cli(directory, capsys)
    assert code == 1 and "does not follow the record before it" in out
    # Not JSON: named, one line.
    anchor.write_text("{")
    code, out = _verify_cli(directory, capsys)
    assert code == 1 and "not a readable prune anchor" in out
    assert len(out.strip().splitlines()) == 1


def test_replay_refuses_a_restore_point_older_than_the_pruned_stretch(
    db: Db, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    archive = _build(directory, [40, 30, 20, 5, 1])
    archive.prune(NOW - timedelta(days=15))
    key = archive_key(directory)
    conn = psycopg2.connect(db.dsn)
    try:
        with pytest.raises(ReplayGap, match="pruned up to end LSN"):
            replay(Archive(directory), conn, Window(start_time=NOW - timedelta(days=25)), key=key)
        assert db.sql("SELECT count(*) FROM ledger") == "0"
        # A restore point after the pruned stretch replays what is kept.
        result = replay(
            Archive(directory), conn, Window(start_time=NOW - timedelta(days=10)), key=key
        )
        assert result.applied == 2
        assert db.sql("SELECT count(*) FROM ledger") == "2"
    finally:
        conn.close()


def test_the_archiver_prunes_at_the_end_of_its_run(db: Db, tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    directory.mkdir()
    db.create_slots()
    for n in range(6):
        db.sql(f"INSERT INTO ledger(note) VALUES ('row-{n}')")
    first = db.archiver(directory, idle_seconds=0.3, batch_transactions=2).run()
    assert first.segments >= 3 and first.pruned_records == 0
    db.sql("INSERT INTO ledger(note) VALUES ('newest')")
    # A retention that puts every commit before the cutoff: all but the newest record go.
    stats = db.archiver(
        directory, idle_seconds=0.3, retention=-(PRUNE_MARGIN + timedelta(days=1))
    ).run()
    assert stats.pruned_records == first.segments and stats.pruned_bytes > 0
    assert stats.archive_segments == 1
    report = Archive(directory).verify(archive_key(directory))
    assert report.segments == 1 and report.pruned_through_end_lsn > 0
    # Twin: the default retention (none) prunes nothing.
    db.sql("INSERT INTO ledger(note) VALUES ('later')")
    assert db.archiver(directory, idle_seconds=0.3).run().pruned_records == 0


@pytest.mark.parametrize("value", ["0", "-1", "x", "3651"])
def test_the_lambda_refuses_a_retention_it_cannot_use(value: str) -> None:
    env = {"SECRET_ARN": "a", "ARCHIVE_DIR": "/d", "SLOT_NAME": "s", "INTEGRITY_KEY_ARN": "k"}
    with pytest.raises(ValueError, match=r"RETENTION_DAYS: .*from 1 to 3650"):
        Settings.from_env({**env, "RETENTION_DAYS": value})
    assert Settings.from_env({**env, "RETENTION_DAYS": "14"}).retention_days == 14


def test_a_prune_that_fails_leaves_the_run_standing(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What was archived is durable and acknowledged before pruning: a prune that fails (here
    the file system refuses a removal) is counted and logged, and the run's figures stand; the
    next run prunes."""
    directory = tmp_path / "archive"
    directory.mkdir()
    db.create_slots()
    for n in range(4):
        db.sql(f"INSERT INTO ledger(note) VALUES ('row-{n}')")
    db.archiver(directory, idle_seconds=0.3, batch_transactions=2).run()
    db.sql("INSERT INTO ledger(note) VALUES ('newest')")
    retention = -(PRUNE_MARGIN + timedelta(days=1))

    def refused(self: Archive, cutoff: datetime) -> None:
        raise PermissionError(13, "Permission denied", str(self.directory))

    with monkeypatch.context() as patched:
        patched.setattr(Archive, "prune", refused)
        stats = db.archiver(directory, idle_seconds=0.3, retention=retention).run()
    assert (stats.transactions, stats.prune_failures, stats.pruned_records) == (1, 1, 0)
    assert Archive(directory).verify(archive_key(directory)).transactions == 5
    db.sql("INSERT INTO ledger(note) VALUES ('later')")
    retried = db.archiver(directory, idle_seconds=0.3, retention=retention).run()
    assert retried.prune_failures == 0 and retried.pruned_records >= 3
    assert Archive(directory).verify(archive_key(directory)).segments == 1


def test_a_forged_file_at_an_anchor_name_is_never_taken_for_an_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whoever can write the file system puts a file named like the next anchor, to cut the
    chain's start: its seal fails, the prune removes nothing, verify names it."""
    directory = tmp_path / "archive"
    archive = _build(directory, [40, 30, 1])
    second = archive.segments()[1]
    forged = directory / f"pruned_{second.last_end_lsn:016X}.json"
    forged.write_text(json.dumps({"through_end_lsn": second.last_end_lsn, "last_mac": "0" * 64}))
    files = _names(directory)
    with pytest.raises(ArchiveError, match="does not verify with the archive's key"):
        archive.prune(NOW - timedelta(days=15))
    assert _names(directory) == files
    code, out = _verify_cli(directory, capsys)
    assert code == 1 and forged.name in out
