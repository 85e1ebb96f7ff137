"""Bounded memory for any transaction, against the real PostgreSQL: a transaction whose changes
pass the spill threshold is written to disk as it arrives, as a segment of part lines sealed and
linked at COMMIT, still exactly once and durable before it is acknowledged; kill -9 while it is
written loses and duplicates nothing; readers stream the parts; replay applies a spilled
transaction whole or not at all; and a sealed segment whose parts are missing, reordered or mixed
is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from govdr.cli.main import main as govdr_main
from govdr.txlog.runtime.archive import (
    Archive,
    Bound,
    IntegrityError,
    is_last_piece,
    transaction_head,
    transaction_line,
)
from govdr.txlog.runtime.replay import Window, replay
from govdr.txlog.runtime.spill import LEFTOVER_RE, remove_leftovers
from tests.conftest import ROOT
from tests.runtime.conftest import SLOT, Db
from tests.support.archive_keys import archive_key, key_file, writable_archive
from tests.support.peak_rss import run_with_peak_rss

MIB = 1024 * 1024
# The target: the archiver's peak RSS for a single transaction of 1,000,000 rows.
RSS_LIMIT_BYTES = 128 * MIB


BULK_TABLE = "CREATE TABLE IF NOT EXISTS bulk (id bigint PRIMARY KEY, note text)"


def _bulk(db: Db, rows: int) -> int:
    """One INSERT of ``rows`` rows of about 100 bytes; its xid."""
    row = db.sql(
        # One query string is one transaction; psql prints the last statement's result.
        f"INSERT INTO bulk SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, {rows}) g; "
        "SELECT txid_current()"
    )
    return int(row.splitlines()[-1])


def _small(db: Db, note: str) -> list[int]:
    return db.insert_notes(note, 3)


def _command(db: Db, directory: Path, *extra: str) -> list[str]:
    return db.cli_command(directory, "--idle", "1", *extra)


def _run(db: Db, directory: Path, *extra: str) -> tuple[int, str, str, int]:
    """One archiver run to its end: (exit code, stdout, stderr, its peak RSS in bytes)."""
    return run_with_peak_rss(_command(db, directory, *extra), cwd=ROOT)


def _archived(directory: Path) -> list[int]:
    return [txn["xid"] for txn in Archive(directory).transactions()]


def _pieces(directory: Path) -> list[dict[str, Any]]:
    """Every line of the archive as the readers stream it (parts unjoined), changes counted."""
    out = []
    for segment in Archive(directory).segments():
        for piece in segment.pieces(segment.read()):
            out.append({**piece, "changes": len(piece["changes"])})
    return out


def _bracketed_bulk(db: Db, tmp_path: Path, rows: int) -> tuple[Path, list[int], int, list[int]]:
    """An empty archive directory and, after the slot, a small transaction, one of ``rows``
    inserts and another small one: (directory, the xids of each)."""
    directory = tmp_path / "archive"
    directory.mkdir()
    db.sql(BULK_TABLE)  # before the slot: its own transaction is not archived
    db.create_slots()
    before = _small(db, "before")
    big = _bulk(db, rows)
    after = _small(db, "after")
    return directory, before, big, after


def test_a_million_row_transaction_is_archived_in_bounded_memory(db: Db, tmp_path: Path) -> None:
    directory, before, big, after = _bracketed_bulk(db, tmp_path, 1_000_000)
    # The server decodes the whole transaction before it sends it: wait for the last commit.
    end = db.sql("SELECT pg_current_wal_lsn()")

    code, out, err, rss = _run(db, directory, "--stop-lsn", end, "--idle", "60")
    assert code == 0, err
    stats = json.loads(out)
    print(f"archiver peak RSS for one 1,000,000-row transaction: {rss / MIB:.1f} MiB")
    assert rss <= RSS_LIMIT_BYTES, f"peak RSS {rss / MIB:.1f} MiB > 128 MiB"
    assert stats["spilled"] == 1 and stats["transactions"] == len(before) + 1 + len(after)

    pieces = _pieces(directory)
    parts = [p for p in pieces if p["xid"] == big]
    assert len(parts) > 1 and all("part" in p for p in parts)
    assert [p["part"] for p in parts] == list(range(len(parts)))
    assert sum(p["changes"] for p in parts) == 1_000_000
    assert is_last_piece(parts[-1]) and not any(is_last_piece(p) for p in parts[:-1])
    # The spilled transaction is a segment of its own, between the small ones.
    [segment] = [s for s in Archive(directory).segments() if s.first_end_lsn == parts[0]["end_lsn"]]
    assert segment.first_end_lsn == segment.last_end_lsn
    xids = [p["xid"] for p in pieces if is_last_piece(p)]
    assert xids == [*before, big, *after], "each transaction once, in commit order"
    assert not [p for p in directory.iterdir() if LEFTOVER_RE.match(p.name)]
    # The slot is acknowledged past the big transaction: a second run finds nothing.
    code, out, err, _ = _run(db, directory)
    assert code == 0, err
    assert json.loads(out)["transactions"] == 0


def _spilled_past(path: Path, size: int) -> bool:
    """A temporary file of the archive (LEFTOVER_RE) larger than ``size``. Other temporary
    files come and go meanwhile (the manifest's is renamed into place at once): one gone
    before it could be measured is not the spill."""
    if not LEFTOVER_RE.match(path.name):
        return False
    try:
        return path.stat().st_size > size
    except FileNotFoundError:
        return False


def test_kill_9_during_a_spill_loses_and_duplicates_nothing(db: Db, tmp_path: Path) -> None:
    directory, before, big, after = _bracketed_bulk(db, tmp_path, 300_000)

    process = subprocess.Popen(
        _command(db, directory),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    spill: Path | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        spill = next((p for p in directory.iterdir() if _spilled_past(p, 8 * MIB)), None)
        if spill is not None:
            break
        time.sleep(0.005)
    assert spill is not None, "the archiver never spilled (or finished before it could be killed)"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert spill.exists(), "kill -9 leaves the unfinished segment's temporary file behind"
    assert big not in _archived(directory), "nothing of an uncommitted spill is in a segment"

    end = db.sql("SELECT pg_current_wal_lsn()")
    code, _out, err, _ = _run(db, directory, "--stop-lsn", end, "--idle", "60")
    assert code == 0, err
    assert not spill.exists(), "the next run removes what the killed one left"
    xids = _archived(directory)
    assert len(xids) == len(set(xids)), "a transaction was archived twice"
    assert [x for x in xids if x in {*before, big, *after}] == [*before, big, *after]
    [whole] = [t for t in Archive(directory).transactions() if t["xid"] == big]
    assert len(whole["changes"]) == 300_000
    archive = Archive(directory)
    assert archive.verify(archive_key(directory)).transactions == len(xids)


def test_replay_applies_a_spilled_transaction_whole(db: Db, tmp_path: Path) -> None:
    """A spilled transaction of many parts replays into a copy equal to the source; a repeat
    applies nothing; the parts are applied in one database transaction."""
    directory = tmp_path / "archive"
    directory.mkdir()
    db.create_slots()
    db.sql(BULK_TABLE)
    start = db.sql("SELECT now()")
    big = _bulk(db, 20_000)
    db.sql("UPDATE bulk SET note = 'changed' WHERE id % 7 = 0")
    stats = db.archiver(
        directory, idle_seconds=0.5, spill_bytes=256 * 1024, spill_part_bytes=64 * 1024
    ).run()
    assert stats.spilled == 2  # the INSERT and the UPDATE of every seventh row
    assert len([p for p in _pieces(directory) if p["xid"] == big]) >= 10

    target = Db(db.pg)
    try:
        target.sql("CREATE TABLE bulk (id bigint PRIMARY KEY, note text)")
        conn = psycopg2.connect(target.dsn)
        try:
            window = Window(start_time=_time(start))
            key = archive_key(directory)
            result = replay(Archive(directory), conn, window, key=key)
            assert result.applied == 2  # the INSERT and the UPDATE
            again = replay(Archive(directory), conn, window, key=key)
            assert (again.applied, again.skipped) == (0, 2)
        finally:
            conn.close()
        query = "SELECT count(*), md5(string_agg(id || note, ',' ORDER BY id)) FROM bulk"
        assert target.sql(query) == db.sql(query)
    finally:
        target.drop()


def _time(text: str) -> Any:
    from govdr.txlog.runtime.archive import parse_commit_time

    return parse_commit_time(text)


# --- hostile part lines: sealed with the archive's key, so only the structure check stands ---


def _large(directory: Path, parts: list[bytes]) -> Archive:
    archive = writable_archive(directory)
    large = archive.open_large(Bound(5000, "2026-12-04 10:00:00.000001+00"))
    for line in parts:
        large.add(line)
    large.finish()
    return archive


def _part(k: int, last: bool = False, end_lsn: int = 5000, changes: int = 2) -> bytes:
    body = b",".join(b'{"action":"I","schema":"public","table":"t"}' for _ in range(changes))
    head = transaction_head(7, "0/1", end_lsn, "2026-12-04 10:00:00.000001+00", k, last=last)
    return head + body + b"]}\n"


def test_well_formed_parts_stream_one_at_a_time_and_join(tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    directory.mkdir()
    archive = _large(directory, [_part(0), _part(1), _part(2, last=True, changes=1)])
    [segment] = archive.segments()
    content = segment.read(archive_key(directory))
    assert content.transactions == 1
    assert [p["part"] for p in segment.pieces(content)] == [0, 1, 2]
    [whole] = list(archive.transactions())
    assert len(whole["changes"]) == 5 and "part" not in whole
    assert archive.verify(archive_key(directory)).transactions == 1


@pytest.mark.parametrize(
    ("parts", "needle"),
    [
        ([_part(0), _part(2, True), _part(1)], "part 1 of the transaction"),  # reordered
        ([_part(0), _part(1)], "ends before the last part"),  # the last part missing
        ([_part(1), _part(2, True)], "part 1 begins a transaction"),  # the first missing
        ([_part(0), _part(1, True, end_lsn=4999)], "part 1 of the transaction"),  # another's
        ([_part(0, True), _part(1, True)], "not in LSN order"),  # a part after the last
    ],
)
def test_missing_reordered_or_mixed_parts_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parts: list[bytes], needle: str
) -> None:
    directory = tmp_path / "archive"
    directory.mkdir()
    archive = _large(directory, parts)
    [segment] = archive.segments()
    with pytest.raises(IntegrityError, match=needle):
        segment.read(archive_key(directory))
    code = govdr_main(
        ["txlog", "verify", "--dir", str(directory), "--key-file", str(key_file(directory))]
    )
    captured = capsys.readouterr()
    assert code == 1 and needle in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_a_whole_transaction_inside_parts_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    directory.mkdir()
    inside = transaction_line(8, "0/2", 5000, "2026-12-04 10:00:00.000001+00", [b"{}"])
    archive = _large(directory, [_part(0), inside, _part(1, True)])
    with pytest.raises(IntegrityError, match="part 1 of the transaction"):
        archive.segments()[0].read()


def test_replay_commits_no_part_of_a_transaction_whose_later_part_is_bad(
    db: Db, tmp_path: Path
) -> None:
    """A sealed segment whose last part is not JSON: the earlier parts were applied inside the
    replay's database transaction, and none of them is kept."""
    directory = tmp_path / "archive"
    directory.mkdir()
    row = (
        '{"action":"I","schema":"public","table":"ledger","columns":[{"name":"id",'
        '"type":"bigint","value":%d},{"name":"note","type":"text","value":"p"}]}'
    )
    first = transaction_head(7, "0/1", 5000, "2026-12-04 10:00:00.000001+00", 0)
    good = first + ",".join(row % i for i in range(1, 4)).encode() + b"]}\n"
    bad = transaction_head(7, "0/1", 5000, "2026-12-04 10:00:00.000001+00", 1, last=True)
    bad += b"{]}\n"
    archive = _large(directory, [good, bad])
    target = Db(db.pg)
    try:
        target.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, note text)")
        conn = psycopg2.connect(target.dsn)
        try:
            with pytest.raises(IntegrityError, match="not JSON"):
                replay(archive, conn, Window(), key=archive_key(directory))
        finally:
            conn.close()
        assert target.sql("SELECT count(*) FROM ledger") == "0"
    finally:
        target.drop()


def test_the_measurement_sees_a_transaction_held_in_memory(db: Db, tmp_path: Path) -> None:
    """Failing twin of the bound above: with the spill threshold above the transaction, the
    archiver holds it whole and the same measurement reports far more than 128 MiB."""
    directory = tmp_path / "archive"
    directory.mkdir()
    db.sql(BULK_TABLE)
    db.create_slots()
    _bulk(db, 300_000)
    end = db.sql("SELECT pg_current_wal_lsn()")
    code, out, err, rss = _run(
        db, directory, "--stop-lsn", end, "--idle", "60", "--spill-mib", "4096"
    )
    assert code == 0, err
    assert json.loads(out)["spilled"] == 0
    print(f"archiver peak RSS for one 300,000-row transaction held in memory: {rss / MIB:.1f} MiB")
    assert rss > RSS_LIMIT_BYTES


@pytest.mark.parametrize(
    ("option", "value", "rule"),
    [
        ("--spill-mib", value, "whole number of MiB from 1 to 4096")
        for value in ("0", "4097", "four", "-1")
    ]
    + [
        ("--retention-days", value, "whole number of days from 1 to 3650")
        for value in ("0", "3651", "14d", "-7")
    ],
)
def test_a_size_or_retention_out_of_range_is_one_line(
    tmp_path: Path, option: str, value: str, rule: str
) -> None:
    command = [
        sys.executable,
        "-m",
        "govdr.txlog.runtime",
        "--dsn",
        "host=/nonexistent dbname=x",
        "--dir",
        str(tmp_path),
        "--slot",
        SLOT,
        "--key-file",
        str(tmp_path.with_name("k")),
        option,
        value,
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert rule in done.stderr and "Traceback" not in done.stderr


def test_only_the_temporary_files_of_dead_runs_are_removed(tmp_path: Path) -> None:
    keep = tmp_path / "keep.txt"
    keep.write_text("not the archiver's")
    names = {
        ".0000000001000000-0000000001000000_20261204T100000000001Z_20261204T100000000001Z"
        ".jsonl.4242.0a1b2c3d.tmp": True,  # a killed run's half-written segment
        "0000000001000000-0000000001000000_20261204T100000000001Z_20261204T100000000001Z"
        ".jsonl": False,  # a segment
        "gap_0000000001000000-0000000002000000.json": False,
        "archive.json": False,
        ".archive.json.4242.notahex0.tmp": False,
        ".notes.tmp": False,
        "x.jsonl.4242.0a1b2c3d.tmp": False,  # not a dot-file
    }
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / ".gap.json.1.deadbeef.tmp").symlink_to(keep)  # a link is never followed or removed
    removed = remove_leftovers(tmp_path)
    assert removed == sorted(name for name, gone in names.items() if gone)
    assert {p.name for p in tmp_path.iterdir()} == {
        "keep.txt",
        ".gap.json.1.deadbeef.tmp",
        *(name for name, gone in names.items() if not gone),
    }
    assert keep.read_text() == "not the archiver's"
