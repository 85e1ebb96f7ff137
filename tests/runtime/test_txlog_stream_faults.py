"""The archiver's control flow against a scripted stream, and archives built by hand (no
PostgreSQL): a stream that pauses or runs out of time inside a large transaction ends the run
instead of hanging it; two gaps recorded at the same end keep their order; pruning never takes
the archive's newest segment; a crafted line without a transaction's fields is named."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from govdr.cli.main import main as govdr_main
from govdr.txlog.runtime.archive import Archive, Bound, IntegrityError, transaction_line
from govdr.txlog.runtime.archiver import RunStats
from govdr.txlog.runtime.integrity import seal_segment
from govdr.txlog.runtime.replay import Window, changes_to_table
from govdr.txlog.runtime.spill import LEFTOVER_RE
from tests.support.archive_keys import archive_key, writable_archive
from tests.support.fake_stream import (
    STAMP,
    FakeCursor,
    begin,
    commit,
    insert,
    run_stream,
    scripted_archiver,
)

LARGE = {"spill_bytes": 2000, "spill_part_bytes": 1000}


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if LEFTOVER_RE.match(p.name)]


def test_a_pause_inside_a_large_transaction_ends_the_run(tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    messages = [begin(1, "0/100", "0/200")] + [insert(i) for i in range(100)]  # no COMMIT yet
    archiver, [cursor] = scripted_archiver(
        directory, [FakeCursor(messages)], idle_seconds=0.5, **LARGE
    )
    stats = run_stream(archiver)
    assert isinstance(stats, RunStats), stats  # "hung" before the fix
    assert stats.stopped_by == "idle" and stats.spilled == 1
    assert Archive(directory).segments() == [] and _leftovers(directory) == []
    assert not any(cursor.feedback), "nothing of it was acknowledged"
    # Twin: the same transaction with its COMMIT is archived whole.
    twin, _ = scripted_archiver(
        tmp_path / "twin",
        [FakeCursor([*messages, commit(1, "0/150", "0/200")])],
        idle_seconds=0.5,
        **LARGE,
    )
    done = run_stream(twin)
    assert isinstance(done, RunStats) and done.transactions == 1
    [whole] = list(Archive(tmp_path / "twin").transactions())
    assert len(whole["changes"]) == 100


def test_the_deadline_inside_a_large_transaction_ends_the_run(tmp_path: Path) -> None:
    now = [0.0]
    messages = [begin(1, "0/100", "0/200")] + [insert(i) for i in range(100)]

    def budget_spent() -> None:  # the time budget runs out while the transaction streams
        now[0] = 5.0

    archiver, _ = scripted_archiver(
        tmp_path / "archive",
        [FakeCursor(messages, on_empty=budget_spent)],
        idle_seconds=100,
        deadline=1.0,
        clock=lambda: now[0],
        **LARGE,
    )
    stats = run_stream(archiver)
    assert isinstance(stats, RunStats), stats
    assert stats.stopped_by == "deadline" and stats.transactions == 0
    assert _leftovers(tmp_path / "archive") == []


def test_two_gaps_at_the_same_end_keep_their_order(tmp_path: Path) -> None:
    """The slot replaced twice with nothing archived between: every such archive verifies and
    opens, whatever order its directory lists the two gap records in (20 archives, so that
    both orders occur)."""
    for k in range(20):
        directory = tmp_path / f"archive{k}"
        directory.mkdir()
        archive = writable_archive(directory)
        end = 0x200 + k * 0x10
        line = transaction_line(1, "0/100", end, STAMP, [b"{}"])
        archive.write_segment([line], Bound(end, STAMP), Bound(end, STAMP))
        archive.record_gap(end, 0x5000 + k, "first replacement", STAMP)
        archive.record_gap(end, 0x9000 + k * 7, "second replacement", STAMP)
        report = Archive(directory).verify(archive_key(directory))
        assert len(report.gaps) == 2 and report.gaps[0]["reason"] == "first replacement"
        writable_archive(directory, archive=Archive(directory))  # the next run opens it


def test_pruning_never_takes_the_newest_segment(tmp_path: Path) -> None:
    """A gap is the newest record: the segment before it is the archive's end, which the next
    run compares the slot with; it stays."""
    directory = tmp_path / "archive"
    directory.mkdir()
    archive = writable_archive(directory)
    for end in (0x200, 0x400):
        line = transaction_line(end, "0/100", end, STAMP, [b"{}"])
        archive.write_segment([line], Bound(end, STAMP), Bound(end, STAMP))
    archive.record_gap(0x400, 0x9000, "slot replaced", STAMP)
    result = archive.prune(datetime(2026, 6, 1, tzinfo=UTC))  # everything is older
    assert result.records == 1 and result.segments_kept == 1
    assert Archive(directory).highest_end_lsn() == 0x400
    report = Archive(directory).verify(archive_key(directory))
    assert report.segments == 1 and len(report.gaps) == 1


def test_a_crafted_line_without_the_fields_of_a_transaction_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sealed consistently (the digest and the link are right; only the key would tell), but
    no commit time: readers name the line instead of failing with a KeyError."""
    directory = tmp_path / "archive"
    directory.mkdir()
    writable_archive(directory)
    line = b'{"xid":1,"end_lsn":5,"a":{"b":1,"changes":[]}}\n'
    name = "0000000000000005-0000000000000005_20260101T000000000000Z_20260101T000000000000Z.jsonl"
    prev = Archive(directory).manifest()["mac"]  # type: ignore[index]
    seal, _ = seal_segment(archive_key(directory), name, prev, hashlib.sha256(line).hexdigest())
    (directory / name).write_bytes(line + seal)
    with pytest.raises(IntegrityError, match="line 1: not an archived transaction"):
        list(changes_to_table(Archive(directory), "public.t", Window(), None))
    code = govdr_main(["txlog", "show", "--dir", str(directory), "--table", "public.t"])
    captured = capsys.readouterr()
    assert code == 2 and "not an archived transaction" in captured.err
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1


def test_a_redelivered_large_transaction_is_skipped_once_archived(tmp_path: Path) -> None:
    """A lost connection after a large (spilled) transaction: the server redelivers it from
    the slot's last confirmed position. The redelivery is recognised at its BEGIN (its end LSN
    is archived), its changes are dropped as they come, and it is counted skipped; the new
    transaction after it is archived. Every transaction is in the archive exactly once."""
    import psycopg2

    directory = tmp_path / "archive"
    large = [
        begin(1, "0/100", "0/200"),
        *(insert(i) for i in range(100)),
        commit(1, "0/150", "0/200"),
    ]
    small = [begin(2, "0/300", "0/400"), insert(1000), commit(2, "0/350", "0/400")]
    archiver, _ = scripted_archiver(
        directory,
        [
            FakeCursor([*large, psycopg2.InterfaceError("connection lost")]),
            FakeCursor([*large, *small]),
        ],
        idle_seconds=0.5,
        **LARGE,
    )
    stats = run_stream(archiver)
    assert isinstance(stats, RunStats), stats
    assert (stats.reconnects, stats.spilled, stats.skipped) == (1, 1, 1)
    assert stats.transactions == 2
    archived = list(Archive(directory).transactions())
    assert [t["xid"] for t in archived] == [1, 2]
    assert len(archived[0]["changes"]) == 100
    assert _leftovers(directory) == []
