"""Replay: a dump at T0 plus the archive up to T1 equals the source as of T1."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest

from govdr.txlog.runtime.archive import Archive, ArchiveError, parse_lsn
from govdr.txlog.runtime.replay import Window, changes_to_table, replay, segments_between
from tests.runtime.conftest import Db
from tests.support.archive_keys import archive_key, key_file, writable_archive
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
            archive,
            conn,
            window,
            key=archive_key(archive.directory),
            progress=lambda n, _: progress.append(n),
            progress_every=100,
        )
        assert result.applied == 300
        assert progress == [100, 200, 300]
        assert fingerprint(postgres, f"{suffix}_replayed") == fingerprint(
            postgres, f"{suffix}_expected"
        )
        again = replay(archive, conn, window, key=archive_key(archive.directory))
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
                "--key-file",
                str(key_file(archive.directory)),
                "--target-dsn",
                # A DSN naming its own sslmode is used as given (a Unix socket has no TLS).
                f"{postgres.dsn(target)} sslmode=disable",
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


# Issue 18: replay treats the archive as data, keeps numbers exact, leaves the target's
# triggers, generated columns and sequences right, and keeps values out of the statement log.

SECRET_VALUE = "citizen-7f3a9c-do-not-log"
BIG_NUMERIC = "12345678901234567890.123456789012345678"


def _archived(
    postgres: Postgres, tmp_path: Path, ddl: str, dml: list[str]
) -> tuple[Db, Archive, str]:
    """A source database with ``ddl``, the archive of ``dml`` run on it, and an empty target
    database (name returned) with the same ``ddl``, as a restore taken before ``dml``."""
    db = Db(postgres)
    db.sql(ddl)
    db.create_slots()
    for statement in dml:
        db.sql(statement)
    directory = tmp_path / "archive"
    directory.mkdir()
    db.archiver(directory, idle_seconds=0.5).run()
    target = f"{db.name}_target"
    postgres.psql(f"CREATE DATABASE {target}")
    postgres.psql(ddl, target)
    return db, Archive(directory), target


def _crafted(tmp_path: Path, changes: list[dict[str, object]]) -> Archive:
    """An archive of one segment holding one transaction per change (end LSNs 100, 200...)."""
    from govdr.txlog.runtime.archive import Bound, transaction_line

    directory = tmp_path / "crafted"
    directory.mkdir()
    stamp = "2026-11-22 08:00:00.000001+00"
    lines = [
        transaction_line(700 + i, "0/1", 100 * (i + 1), stamp, [json.dumps(c).encode()])
        for i, c in enumerate(changes)
    ]
    archive = writable_archive(directory)
    archive.write_segment(lines, Bound(100, stamp), Bound(100 * len(changes), stamp))
    return archive


def _replay(postgres: Postgres, dbname: str, archive: Archive, **kwargs: object) -> object:
    conn = psycopg2.connect(postgres.dsn(dbname))
    try:
        key = archive_key(archive.directory)
        return replay(archive, conn, Window(), key=key, **kwargs)  # type: ignore[arg-type]
    finally:
        conn.close()


@pytest.fixture
def target(postgres: Postgres) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    postgres.psql(f"CREATE DATABASE {name}")
    postgres.psql("CREATE TABLE t (id int PRIMARY KEY, note text)", name)
    yield name
    postgres.psql(f"DROP DATABASE {name}")


def test_item_1_a_column_type_in_the_archive_is_not_sql(
    postgres: Postgres, tmp_path: Path, target: str
) -> None:
    """Replay pasted each column's archived `type` into the statement (`%s::{type}`): a type
    `text); CREATE ROLE intruder LOGIN SUPERUSER; --` created the role. Types now come from
    the target's catalog."""
    role = f"intruder_{target}"
    archive = _crafted(
        tmp_path,
        [
            {
                "action": "I",
                "schema": "public",
                "table": "t",
                "columns": [
                    {"name": "id", "type": "integer", "value": 1},
                    {
                        "name": "note",
                        "type": f"text); CREATE ROLE {role} LOGIN SUPERUSER; --",
                        "value": "x",
                    },
                ],
            }
        ],
    )
    try:
        _replay(postgres, target, archive)
        assert postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == "0"
        assert postgres.psql("SELECT id || ':' || note FROM t", target) == "1:x"
    finally:
        postgres.psql(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.parametrize(
    ("schema", "table"), [("public", "govdr_txlog_replay"), ("pg_catalog", "pg_database")]
)
def test_item_1_the_bookkeeping_table_and_system_schemas_are_refused(
    postgres: Postgres, tmp_path: Path, target: str, schema: str, table: str
) -> None:
    """A record's `schema`/`table` could name any table, including replay's own bookkeeping
    table (and the system catalogs): replay executed it as the master user."""
    if table == "govdr_txlog_replay":
        column = {"name": "last_end_lsn", "type": "bigint", "value": 999999}
        identity = {"name": "id", "type": "int", "value": 1}
    else:
        column = {"name": "datallowconn", "type": "boolean", "value": False}
        identity = {"name": "datname", "type": "name", "value": target}
    archive = _crafted(
        tmp_path,
        [
            {
                "action": "I",
                "schema": "public",
                "table": "t",
                "columns": [{"name": "id", "type": "int", "value": 1}],
            },
            {
                "action": "U",
                "schema": schema,
                "table": table,
                "columns": [column],
                "identity": [identity],
            },
        ],
    )
    with pytest.raises(ArchiveError, match=rf"changes {schema}\.{table}; replay never writes"):
        _replay(postgres, target, archive)
    # The transaction before it is applied, the refused one is not.
    assert postgres.psql("SELECT count(*) FROM t", target) == "1"
    assert postgres.psql("SELECT last_end_lsn FROM govdr_txlog_replay", target) == "100"
    assert postgres.psql("SELECT count(*) FROM pg_database WHERE NOT datallowconn") == "1"


def test_item_1_a_truncate_record_does_not_empty_a_table(
    postgres: Postgres, tmp_path: Path, target: str
) -> None:
    """An `"action":"T"` record emptied a table; replay applies only I/U/D and stops with a
    clear error before such a transaction."""
    postgres.psql("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')", target)
    archive = _crafted(tmp_path, [{"action": "T", "schema": "public", "table": "t"}])
    with pytest.raises(ArchiveError, match=r"holds a TRUNCATE of public\.t; replay applies only"):
        _replay(postgres, target, archive)
    assert postgres.psql("SELECT count(*) FROM t", target) == "3"


def test_item_1_only_the_allowed_tables_are_replayed(
    postgres: Postgres, tmp_path: Path, target: str
) -> None:
    """Replay wrote whatever table a record named; now only `tables` (or tables that exist in
    the target) are replayed, and a table missing from the target is a clear error."""
    insert = {
        "action": "I",
        "schema": "public",
        "table": "t",
        "columns": [{"name": "id", "type": "int", "value": 1}],
    }
    elsewhere = {**insert, "table": "elsewhere"}
    archive = _crafted(tmp_path, [insert, elsewhere])
    with pytest.raises(ArchiveError, match=r"public\.elsewhere, which does not exist"):
        _replay(postgres, target, archive)
    postgres.psql("CREATE TABLE elsewhere (id int)", target)
    result = _replay(postgres, target, archive, tables=["public.t"])
    assert result.skipped_changes == 1  # type: ignore[attr-defined]
    assert postgres.psql("SELECT count(*) FROM elsewhere", target) == "0"
    assert postgres.psql("SELECT count(*) FROM t", target) == "1"


def test_item_4_numeric_values_round_trip_exactly(
    postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`json.loads` turned wal2json's numbers into floats: `12345678901234567890.1234...` was
    replayed as `12345678901234567000`, and `txlog show --json` printed the same wrong value."""
    from govdr.cli.main import main

    db, archive, target = _archived(
        postgres,
        tmp_path,
        "CREATE TABLE money (id bigint PRIMARY KEY, amount numeric)",
        [f"INSERT INTO money VALUES (9007199254740993, {BIG_NUMERIC})"],
    )
    try:
        _replay(postgres, target, archive)
        assert postgres.psql("SELECT id || ' ' || amount FROM money", target) == (
            f"9007199254740993 {BIG_NUMERIC}"
        )
        assert (
            main(["txlog", "show", "--dir", str(archive.directory), "--table", "money", "--json"])
            == 0
        )
        printed = capsys.readouterr().out
        columns = json.loads(printed)[0]["change"]["columns"]
        assert [c["value"] for c in columns] == [9007199254740993, BIG_NUMERIC]
    finally:
        postgres.psql(f"DROP DATABASE {target}")
        db.drop()


EIGHT_DDL = (
    "CREATE TABLE acct (id bigserial PRIMARY KEY, note text NOT NULL, "
    "doubled int GENERATED ALWAYS AS (length(note) * 2) STORED); "
    "CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)"
)
EIGHT_DML = [
    "INSERT INTO acct (note) VALUES ('a'), ('bb'), ('ccc')",
    "UPDATE acct SET note = 'dddd' WHERE id = 2",
    "DELETE FROM acct WHERE id = 1",
    "INSERT INTO ident (v) VALUES ('x'), ('y')",
    "UPDATE ident SET v = 'z' WHERE id = 2",
]


PLAIN_DDL = (
    "CREATE TABLE acct (id bigserial PRIMARY KEY, note text NOT NULL); "
    "CREATE TABLE ident (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)"
)


def _rows(postgres: Postgres, dbname: str) -> str:
    return postgres.psql(
        "SELECT string_agg(t::text, ';' ORDER BY t::text) FROM acct t "
        "UNION ALL SELECT string_agg(t::text, ';' ORDER BY t::text) FROM ident t",
        dbname,
    )


def test_item_8_target_triggers_do_not_fire(postgres: Postgres, tmp_path: Path) -> None:
    """Replay fired the target's triggers: an audit trigger aborted it. The replaying session
    now sets session_replication_role = replica."""
    db, archive, target = _archived(postgres, tmp_path, PLAIN_DDL, EIGHT_DML)
    try:
        postgres.psql(
            "CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'audit trigger fired'; END$$; "
            "CREATE TRIGGER audit BEFORE INSERT OR UPDATE OR DELETE ON acct "
            "FOR EACH ROW EXECUTE FUNCTION audit()",
            target,
        )
        _replay(postgres, target, archive)
        assert _rows(postgres, target) == _rows(postgres, db.name)
    finally:
        postgres.psql(f"DROP DATABASE {target}")
        db.drop()


def test_item_8_sequences_are_set_past_the_replayed_values(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Replay left sequences behind: the application's first insert failed on `id=1`."""
    db, archive, target = _archived(postgres, tmp_path, PLAIN_DDL, EIGHT_DML)
    try:
        _replay(postgres, target, archive)
        assert (
            postgres.psql(
                "INSERT INTO acct (note) VALUES ('new') RETURNING id", target
            ).splitlines()[0]
            == "4"
        )
        assert (
            postgres.psql("INSERT INTO ident (v) VALUES ('new') RETURNING id", target).splitlines()[
                0
            ]
            == "3"
        )
    finally:
        postgres.psql(f"DROP DATABASE {target}")
        db.drop()


def test_item_8_generated_and_identity_always_columns_replay(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Replay aborted on stored generated columns (and identity ALWAYS columns): the target
    computes generated columns; identity values are written with OVERRIDING SYSTEM VALUE."""
    db, archive, target = _archived(postgres, tmp_path, EIGHT_DDL, EIGHT_DML)
    try:
        result = _replay(postgres, target, archive)
        assert result.applied == len(EIGHT_DML)  # type: ignore[attr-defined]
        assert _rows(postgres, target) == _rows(postgres, db.name)
        assert "(2,dddd,8)" in _rows(postgres, target)
    finally:
        postgres.psql(f"DROP DATABASE {target}")
        db.drop()


def test_item_11_replayed_values_do_not_reach_the_statement_log(
    postgres: Postgres, tmp_path: Path
) -> None:
    """psycopg2 interpolates parameters on the client, so every replayed value was in the
    statement text that pgaudit (`pgaudit.log=write`) sends to CloudWatch. Values now travel
    as COPY data; the log (here `log_statement = all`) holds no replayed value."""
    db, archive, target = _archived(
        postgres,
        tmp_path,
        "CREATE TABLE citizen (id int PRIMARY KEY, name text, income numeric)",
        [
            f"INSERT INTO citizen VALUES (1, '{SECRET_VALUE}', 4242.4242)",
            f"UPDATE citizen SET name = '{SECRET_VALUE}-2' WHERE id = 1",
            "DELETE FROM citizen WHERE id = 1",
            f"INSERT INTO citizen VALUES (2, '{SECRET_VALUE}-3', 77.77)",
        ],
    )
    log = postgres.socket_dir / "server.log"
    try:
        postgres.psql(f"ALTER DATABASE {target} SET log_statement = 'all'")
        start = log.stat().st_size
        result = _replay(postgres, target, archive)
        assert result.applied == 4  # type: ignore[attr-defined]
        assert postgres.psql("SELECT name FROM citizen", target) == f"{SECRET_VALUE}-3"
        with log.open("rb") as handle:
            handle.seek(start)
            written = handle.read().decode(errors="replace")
        assert 'INSERT INTO "public"."citizen"' in written  # the log records the statements
        assert 'DELETE FROM "public"."citizen"' in written
        assert SECRET_VALUE not in written
        assert "4242.4242" not in written and "77.77" not in written
    finally:
        postgres.psql(f"DROP DATABASE {target}")
        db.drop()


def test_item_11_values_survive_the_copy_path_exactly(postgres: Postgres, tmp_path: Path) -> None:
    """Values now travel as COPY data instead of client-side parameters: text with tabs,
    newlines, backslashes, quotes, control and non-ASCII characters, bytea (which wal2json
    writes as bare hex digits and replay used to store as their ASCII codes), arrays, json,
    booleans, times and NULL arrive unchanged."""
    ddl = (
        "CREATE TABLE odd (id int PRIMARY KEY, t text, b bytea, a int[], j jsonb, "
        "f boolean, ts timestamptz, n numeric, d double precision, u uuid)"
    )
    db, archive, target = _archived(
        postgres,
        tmp_path,
        ddl,
        [
            "INSERT INTO odd VALUES (1, "
            "E'tab\\there\\nnew \\\\back \"q\" ''s'' \\u00fc \\x01 \\\\.',"
            " '\\x00ff5c', '{1,NULL,3}', '{\"k\": [1.50, null, \"\\\\n\"]}', false,"
            " '2026-11-22 08:00:00.123456+00', 1e-30, 1e-300, gen_random_uuid())",
            "INSERT INTO odd (id) VALUES (2)",
            "UPDATE odd SET t = E'\\\\N', f = true WHERE id = 2",
        ],
    )
    try:
        _replay(postgres, target, archive)
        query = "SELECT string_agg(o::text, E'\\n' ORDER BY id) FROM odd o"
        assert postgres.psql(query, target) == postgres.psql(query, db.name)
    finally:
        postgres.psql(f"DROP DATABASE {target}")
        db.drop()


def test_item_1_the_cli_reports_a_refused_record_in_one_line(
    postgres: Postgres, tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused record is a clear error with exit 2 from `govdr txlog replay`, not a trace."""
    from govdr.cli.main import main

    archive = _crafted(tmp_path, [{"action": "T", "schema": "public", "table": "t"}])
    everything = ["--start-lsn", "0/0", "--until", "2030-01-01T00:00:00+00:00"]
    replay_cli = ["txlog", "replay", "--dir", str(archive.directory)]
    replay_cli += ["--key-file", str(key_file(archive.directory))]
    replay_cli += ["--target-dsn", f"{postgres.dsn(target)} sslmode=disable", *everything]
    code = main(replay_cli)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("govdr: transaction xid 700 (end LSN 100) holds a TRUNCATE of public.t")
    assert "Traceback" not in err
    assert main([*replay_cli, "--tables", "pg_catalog.pg_class"]) == 2
    assert "--tables names pg_catalog.pg_class" in capsys.readouterr().err


def test_item_8_a_user_who_cannot_disable_triggers_is_told_so(
    postgres: Postgres, tmp_path: Path, target: str
) -> None:
    """Replay must not run with the target's triggers firing: a user who may not set
    session_replication_role gets a clear error before anything is applied."""
    import secrets

    user, password = f"plain_{target}", secrets.token_urlsafe(24)
    postgres.psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    postgres.psql(f"GRANT ALL ON SCHEMA public TO {user}; GRANT ALL ON t TO {user}", target)
    archive = _crafted(
        tmp_path,
        [
            {
                "action": "I",
                "schema": "public",
                "table": "t",
                "columns": [{"name": "id", "type": "int", "value": 1}],
            }
        ],
    )
    conn = psycopg2.connect(
        f"{postgres.dsn(target).replace('user=postgres', f'user={user}')} password={password}"
    )
    try:
        with pytest.raises(ArchiveError, match="may not set session_replication_role"):
            replay(archive, conn, Window(), key=archive_key(archive.directory))
    finally:
        conn.close()
        postgres.psql(
            f"REVOKE ALL ON SCHEMA public FROM {user}; REVOKE ALL ON t FROM {user}", target
        )
        postgres.psql(f"DROP ROLE {user}")
    assert postgres.psql("SELECT count(*) FROM t", target) == "0"
