"""The slot cannot fill the primary: with ``max_slot_wal_keep_size`` set, PostgreSQL invalidates
a slot that keeps too much WAL, and the archiver then records the gap and starts a new slot, or
(without ``replace_lost_slot``) stops with one line, the slot untouched.

A cluster of its own (the cap applies to every slot of a cluster), capped at 1 MB: any slot
whose restart position is a WAL segment behind is invalidated at the next checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from moto import mock_aws

from govdr.txlog.runtime.archive import Archive, format_lsn, parse_lsn
from govdr.txlog.runtime.archiver import (
    Archiver,
    SlotInvalidated,
    ensure_slot,
    slot_state,
)
from tests.conftest import ROOT
from tests.runtime.conftest import SLOT, Db
from tests.runtime.test_txlog_handler import _invoke_in_moto
from tests.support.archive_keys import archive_key
from tests.support.pgcluster import (
    ClusterError,
    Postgres,
    start_cluster,
    stop_cluster,
)


@pytest.fixture(scope="module")
def capped() -> Iterator[Postgres]:
    try:
        server = start_cluster()
    except ClusterError as exc:
        pytest.fail(str(exc))
    try:
        server.psql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        server.psql("SELECT pg_reload_conf()")
        yield server
    finally:
        stop_cluster(server)


@pytest.fixture
def cdb(capped: Postgres) -> Iterator[Db]:
    database = Db(capped)
    database.sql("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text)")
    conn = psycopg2.connect(database.dsn)
    conn.autocommit = True
    with conn.cursor() as cursor:
        assert ensure_slot(cursor, SLOT)
    conn.close()
    yield database
    database.drop()


def _state(db: Db) -> tuple[str, str | None]:
    return tuple(  # type: ignore[return-value]
        db.sql(
            f"SELECT wal_status, coalesce(safe_wal_size::text, 'none') FROM pg_replication_slots "
            f"WHERE slot_name = '{SLOT}'"
        ).split("|")
    )


def _write(db: Db, note: str, count: int = 5) -> list[int]:
    return db.insert_notes(note, count)


def _push_wal_past_the_cap(db: Db) -> None:
    """Fill and switch WAL segments, then checkpoint: a slot left behind is invalidated."""
    for _ in range(3):
        db.sql("INSERT INTO ledger(note) SELECT 'filler' FROM generate_series(1, 2000)")
        db.pg.psql("SELECT pg_switch_wal()")
    db.pg.psql("CHECKPOINT")


def _archived(directory: Path) -> list[int]:
    return [txn["xid"] for txn in Archive(directory).transactions()]


def test_the_cap_is_reported_and_a_slot_left_behind_is_invalidated(cdb: Db) -> None:
    # Twin: within the cap the slot is 'reserved' with safe WAL left.
    status, safe = _state(cdb)
    assert status == "reserved" and int(safe) > 0
    _push_wal_past_the_cap(cdb)
    assert _state(cdb) == ("lost", "none")


@pytest.mark.control("SI-4")
def test_an_invalidated_slot_is_replaced_and_the_gap_recorded(cdb: Db, tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    directory.mkdir()
    before = _write(cdb, "before")
    first = cdb.archiver(directory, replace_lost_slot=True).run()
    assert first.transactions >= len(before) and first.slot_wal_status == "reserved"
    assert first.slot_safe_wal_bytes is not None and first.slot_safe_wal_bytes > 0
    end = Archive(directory).segments()[-1].last_end_lsn

    lost = _write(cdb, "lost")  # never read: the slot is invalidated first
    _push_wal_past_the_cap(cdb)
    assert _state(cdb)[0] == "lost"

    second = cdb.archiver(directory, replace_lost_slot=True)
    stats = second.run()
    assert (stats.slot_invalidations, stats.gaps) == (1, 1)
    assert stats.slot_wal_status == "reserved"
    after = _write(cdb, "after")
    cdb.archiver(directory, replace_lost_slot=True).run()

    archive = Archive(directory)
    report = archive.verify(archive_key(directory))
    assert len(report.gaps) == 1
    gap = report.gaps[0]
    assert gap["after_end_lsn"] == format_lsn(end) and parse_lsn(gap["resume_lsn"]) > end
    assert "invalidated" in gap["reason"] and "max_slot_wal_keep_size" in gap["reason"]
    xids = _archived(directory)
    assert len(xids) == len(set(xids)), "a transaction was archived twice"
    assert set(before) <= set(xids) and set(after) <= set(xids)
    assert not set(lost) & set(xids), "the invalidated stretch cannot be in the archive"
    assert _state(cdb)[0] == "reserved"


def test_without_replacement_the_run_stops_in_one_line_and_touches_nothing(
    cdb: Db, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    directory.mkdir()
    _write(cdb, "before")
    cdb.archiver(directory).run()
    files = sorted(p.name for p in directory.iterdir())
    end = format_lsn(Archive(directory).segments()[-1].last_end_lsn)
    _push_wal_past_the_cap(cdb)

    with pytest.raises(SlotInvalidated) as refused:
        cdb.archiver(directory).run()
    message = str(refused.value)
    assert "\n" not in message
    assert f"complete up to {end}" in message and "--create-slot" in message
    assert sorted(p.name for p in directory.iterdir()) == files  # no gap, no segment
    assert _state(cdb)[0] == "lost"  # the slot is left for the operator


def _cli(db: Db, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = db.cli_command(directory, "--idle", "0.5", *extra)
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=120
    )


def test_the_cli_names_the_invalidation_and_create_slot_replaces_it(
    cdb: Db, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    directory.mkdir()
    _write(cdb, "before")
    assert _cli(cdb, directory).returncode == 0
    _push_wal_past_the_cap(cdb)
    refused = _cli(cdb, directory)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "was invalidated by the server" in refused.stderr
    assert "Traceback" not in refused.stderr
    replaced = _cli(cdb, directory, "--create-slot")
    assert replaced.returncode == 0, replaced.stderr
    assert '"slot_invalidations": 1' in replaced.stdout and '"gaps": 1' in replaced.stdout


def test_a_slot_invalidated_while_it_is_read_is_replaced_within_the_run(
    cdb: Db, tmp_path: Path
) -> None:
    """An open transaction holds the slot's restart position back while the archiver reads;
    the checkpoint invalidates the slot and ends the archiver's stream; the archiver records the
    gap after what it archived, creates a new slot and archives what follows, in the same run."""
    directory = tmp_path / "archive"
    directory.mkdir()
    before = _write(cdb, "before")
    holder = psycopg2.connect(cdb.dsn)
    with holder.cursor() as cursor:
        cursor.execute("INSERT INTO ledger(note) VALUES ('held open')")
    archiver: Archiver = cdb.archiver(
        directory, replace_lost_slot=True, idle_seconds=8.0, deadline=time.monotonic() + 60
    )
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["stats"] = archiver.run()
        except Exception as exc:  # reported to the test below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    for _ in range(200):
        if cdb.sql(f"SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'") == "t":
            break
        time.sleep(0.05)
    _push_wal_past_the_cap(cdb)
    # The new slot is created once the open transaction ends (a logical slot's creation waits
    # for the transactions running at that moment).
    time.sleep(1.0)
    holder.commit()
    holder.close()
    for _ in range(200):
        conn = psycopg2.connect(cdb.dsn)
        with conn.cursor() as cursor:
            state = slot_state(cursor, SLOT)
        conn.close()
        if state is not None and not state.invalidated and archiver.stats.slot_invalidations:
            break
        time.sleep(0.05)
    after = _write(cdb, "after")
    thread.join(timeout=90)
    assert "error" not in result, result.get("error")
    stats = archiver.stats
    assert (stats.slot_invalidations, stats.gaps) == (1, 1)
    xids = _archived(directory)
    assert len(xids) == len(set(xids))
    assert set(before) <= set(xids) and set(after) <= set(xids)
    assert len(Archive(directory).verify(archive_key(directory)).gaps) == 1


def test_the_lambda_replaces_an_invalidated_slot_and_reports_it(
    cdb: Db,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handler's metrics are what the alarm, the dashboard and `govdr status` read: the
    slot's safe WAL under the cap, then one invalidation and one gap, and the error line."""
    directory = tmp_path / "archive"
    directory.mkdir()

    def invoke() -> tuple[dict[str, Any], dict[str, Any], str]:
        result = _invoke_in_moto(cdb, directory, monkeypatch)
        captured = capsys.readouterr()
        [record] = [json.loads(line) for line in captured.out.splitlines() if '"_aws"' in line]
        return result, record, captured.out + captured.err

    with mock_aws():
        _write(cdb, "before")
        healthy, record, _ = invoke()
        # Twin: a healthy capped slot reports WAL left and no invalidation.
        assert healthy["slot_invalidations"] == 0 and healthy["gaps"] == 0
        assert record["SlotInvalidations"] == [0.0]
        # safe_wal_size counts from the slot's WAL segment (16 MiB) plus the 1 MB cap.
        assert 0 < record["SlotSafeWalBytes"][0] <= 17 * 1024 * 1024
        _push_wal_past_the_cap(cdb)
        replaced, record, text = invoke()
    assert (replaced["slot_invalidations"], replaced["gaps"]) == (1, 1)
    assert record["SlotInvalidations"] == [1.0] and record["ArchiveGaps"] == [1.0]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("replication slot invalidated by the server" in e for e in errors), errors
    assert "unused-with-trust-auth" not in text + "".join(errors)
    assert _state(cdb)[0] == "reserved"
