"""An idle database's slot is still confirmed while other databases of the server write WAL:
the archived database sends the slot nothing, and once everything received is acknowledged,
psycopg2 answers the server's keepalives with the position they carry, so the slot does not
keep the other databases' WAL until max_slot_wal_keep_size invalidates it (which would record
a gap although nothing was lost). The run then records, sealed, where the slot was confirmed
past the archive's end, and the next run does not take that lead for a gap; without the record
(removed, or forged) it does, which is the safe side."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
import pytest

from govdr.txlog.runtime.archive import POSITION_RE, Archive, parse_lsn
from govdr.txlog.runtime.archiver import slot_state
from tests.runtime.conftest import SLOT, Db
from tests.support.archive_keys import archive_key


def _other_database_writes(db: Db) -> int:
    """WAL written by another database of the same server; the server's WAL position after."""
    other = Db(db.pg)
    try:
        other.sql("CREATE TABLE filler (x text)")
        for _ in range(3):
            other.sql("INSERT INTO filler SELECT repeat('f', 1000) FROM generate_series(1, 2000)")
            db.pg.psql("SELECT pg_switch_wal()")
        return parse_lsn(db.pg.psql("SELECT pg_current_wal_lsn()"))
    finally:
        other.drop()


def _confirmed(db: Db) -> int:
    conn = psycopg2.connect(db.dsn)
    try:
        with conn.cursor() as cursor:
            state = slot_state(cursor, SLOT)
    finally:
        conn.close()
    assert state is not None
    return state.confirmed


def _idle_archive(db: Db, directory: Path) -> int:
    """An archive of one transaction, then an idle run while another database writes WAL;
    the WAL position that other database reached."""
    directory.mkdir()
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('before')")
    db.archiver(directory, idle_seconds=0.3).run()
    archived_end = _confirmed(db)
    written = _other_database_writes(db)
    assert archived_end < written  # before the idle run the slot is behind that WAL
    idle = db.archiver(directory, idle_seconds=1.5).run()
    assert idle.transactions == 0 and idle.gaps == 0
    assert _confirmed(db) >= written
    return written


def _positions(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if POSITION_RE.match(p.name)]


def test_an_idle_database_s_slot_is_confirmed_without_a_gap(db: Db, tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    _idle_archive(db, directory)
    assert len(_positions(directory)) == 1
    db.sql("INSERT INTO ledger(note) VALUES ('after')")
    after = db.archiver(directory, idle_seconds=0.3).run()
    assert (after.transactions, after.gaps) == (1, 0)
    assert Archive(directory).verify(archive_key(directory)).gaps == []


@pytest.mark.parametrize("damage", ["removed", "forged"])
def test_without_a_sealed_position_the_slot_s_lead_is_a_gap(
    db: Db, tmp_path: Path, damage: str
) -> None:
    """Failing twins: the same idle archive whose position record is gone, or rewritten by
    someone without the key (to hide a gap), records the lead as a gap."""
    directory = tmp_path / "archive"
    _idle_archive(db, directory)
    [position] = _positions(directory)
    if damage == "removed":
        position.unlink()
    else:
        body = json.loads(position.read_text())
        position.write_text(json.dumps({**body, "mac": "0" * 64}))
    db.sql("INSERT INTO ledger(note) VALUES ('after')")
    after = db.archiver(directory, idle_seconds=0.3).run()
    assert after.gaps == 1
