"""Replay: a dump at T0 plus the archive up to T1 equals the source as of T1."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest

from runtime.txlog_archiver.archive import Archive, parse_lsn
from runtime.txlog_archiver.replay import Window, changes_to_table, replay, segments_between
from tests.runtime.conftest import Db
from tests.support.pgcluster import Postgres

TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def fingerprint(pg: Postgres, dbname: str) -> dict[str, str]:
    return {
        table: pg.psql(
            "SELECT count(*) || ':' || "
            "coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') "
            f"FROM {table} t",
            dbname,
        )
        for table in TABLES
    }


def dump(pg: Postgres, dbname: str, path: Path) -> None:
    subprocess.run(
        [str(pg.bin_dir / "pg_dump"), "-Fc", "-f", str(path), "-d", pg.dsn(dbname)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def restore(pg: Postgres, path: Path, dbname: str) -> None:
    pg.psql(f"CREATE DATABASE {dbname}")
    subprocess.run(
        [str(pg.bin_dir / "pg_restore"), "--no-owner", "-d", pg.dsn(dbname), str(path)],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture
def scenario(postgres: Postgres, tmp_path: Path) -> dict[str, object]:
    db = Db(postgres)
    postgres.pgbench("-i", "-s", "1", "-q", dbname=db.name)
    db.create_slots()
    postgres.pgbench("-n", "-c", "2", "-j", "2", "-t", "150", dbname=db.name)
    lsn0 = parse_lsn(db.sql("SELECT pg_current_wal_lsn()"))
    dump(postgres, db.name, tmp_path / "t0.dump")
    postgres.pgbench("-n", "-c", "2", "-j", "2", "-t", "150", dbname=db.name)
    time.sleep(0.2)
    t1 = datetime.fromisoformat(db.sql("SELECT clock_timestamp()").replace(" ", "T"))
    dump(postgres, db.name, tmp_path / "t1.dump")
    time.sleep(0.2)
    postgres.pgbench("-n", "-c", "2", "-j", "2", "-t", "150", dbname=db.name)
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    stats = db.archiver(archive_dir, batch_transactions=50, idle_seconds=0.5).run()
    assert stats.transactions >= 900
    assert sum(1 for t in Archive(archive_dir).transactions() if t["changes"]) == 900
    return {"db": db, "lsn0": lsn0, "t1": t1, "archive": Archive(archive_dir), "dir": tmp_path}


def test_replay_to_t1_equals_the_source_at_t1(
    postgres: Postgres, scenario: dict[str, object]
) -> None:
    db: Db = scenario["db"]  # type: ignore[assignment]
    archive: Archive = scenario["archive"]  # type: ignore[assignment]
    tmp: Path = scenario["dir"]  # type: ignore[assignment]
    suffix = db.name
    restore(postgres, tmp / "t0.dump", f"{suffix}_replayed")
    restore(postgres, tmp / "t1.dump", f"{suffix}_expected")
    assert fingerprint(postgres, f"{suffix}_replayed") != fingerprint(
        postgres, f"{suffix}_expected"
    )

    window = Window(start_lsn=scenario["lsn0"], until=scenario["t1"])  # type: ignore[arg-type]
    progress: list[int] = []
    conn = psycopg2.connect(postgres.dsn(f"{suffix}_replayed"))
    try:
        result = replay(
            archive, conn, window, progress=lambda n, _: progress.append(n), progress_every=100
        )
        assert result.applied == 300
        assert progress == [100, 200, 300]
        assert fingerprint(postgres, f"{suffix}_replayed") == fingerprint(
            postgres, f"{suffix}_expected"
        )
        again = replay(archive, conn, window)
        assert (again.applied, again.skipped) == (0, 300)
    finally:
        conn.close()
        for name in (f"{suffix}_replayed", f"{suffix}_expected"):
            postgres.psql(f"DROP DATABASE {name}")
        db.drop()


def test_list_and_show_by_time(scenario: dict[str, object]) -> None:
    db: Db = scenario["db"]  # type: ignore[assignment]
    archive: Archive = scenario["archive"]  # type: ignore[assignment]
    t1: datetime = scenario["t1"]  # type: ignore[assignment]
    try:
        everything = archive.segments()
        after = segments_between(archive, t1, None)
        assert 0 < len(after) < len(everything)
        assert all(s.last_commit >= t1 for s in after)
        changes = list(changes_to_table(archive, "public.pgbench_tellers", Window(until=t1)))
        assert changes and all(c["table"] == "pgbench_tellers" for _, c in changes)
        assert {c["action"] for _, c in changes} == {"U"}
    finally:
        db.drop()


def test_cli_list_show_and_replay(
    postgres: Postgres, scenario: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from govdr.cli.main import main

    db: Db = scenario["db"]  # type: ignore[assignment]
    archive: Archive = scenario["archive"]  # type: ignore[assignment]
    tmp: Path = scenario["dir"]  # type: ignore[assignment]
    t1: datetime = scenario["t1"]  # type: ignore[assignment]
    directory = str(archive.directory)
    target = f"{db.name}_cli"
    try:
        assert main(["txlog", "list", "--dir", directory, "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert len(listed) == len(archive.segments())
        assert main(["txlog", "list", "--dir", directory, "--from", t1.isoformat()]) == 0
        assert ".jsonl" in capsys.readouterr().out
        assert (
            main(
                [
                    "txlog",
                    "show",
                    "--dir",
                    directory,
                    "--table",
                    "pgbench_branches",
                    "--to",
                    t1.isoformat(),
                ]
            )
            == 0
        )
        assert "U public.pgbench_branches" in capsys.readouterr().out
        restore(postgres, tmp / "t0.dump", target)
        lsn0 = scenario["lsn0"]
        code = main(
            [
                "txlog",
                "replay",
                "--dir",
                directory,
                "--target-dsn",
                postgres.dsn(target),
                "--start-lsn",
                f"{lsn0 >> 32:X}/{lsn0 & 0xFFFFFFFF:X}",  # type: ignore[operator]
                "--until",
                t1.isoformat(),
                "--json",
            ]
        )
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert json.loads(captured.out)["applied"] == 300
        assert "applied 300 transactions" not in captured.err  # progress every 1000
        assert fingerprint(postgres, target) == fingerprint(postgres, _expected(postgres, tmp, db))
    finally:
        for name in (target, f"{db.name}_expected2"):
            postgres.psql(f"DROP DATABASE IF EXISTS {name}")
        db.drop()


def _expected(postgres: Postgres, tmp: Path, db: Db) -> str:
    name = f"{db.name}_expected2"
    restore(postgres, tmp / "t1.dump", name)
    return name
