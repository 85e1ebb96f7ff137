"""The Lambda handler: secret from Secrets Manager, real PostgreSQL, EMF metrics out."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
import pytest
from moto import mock_aws

from govdr.txlog.runtime import handler as lambda_handler
from govdr.txlog.runtime.archive import MANIFEST, ArchiveError
from govdr.txlog.runtime.archiver import OPTIONS, SLOT_BUSY
from govdr.txlog.runtime.handler import Settings, archive_lag_seconds
from tests.runtime.conftest import SLOT, Db
from tests.support.archive_keys import keyring
from tests.support.lambda_context import LambdaTestContext, log_to_current_stdout
from tests.support.pgcluster import LOCAL_SOCKET_TLS

Context = LambdaTestContext


def test_lag_arithmetic() -> None:
    t = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert archive_lag_seconds(None, None) == 0.0
    assert archive_lag_seconds(t, t) == 0.0
    assert archive_lag_seconds(t, t - timedelta(seconds=90)) == 90.0
    assert archive_lag_seconds(t - timedelta(seconds=5), t) == 0.0
    assert archive_lag_seconds(datetime.now(UTC) - timedelta(seconds=30), None) >= 30.0


def test_settings_name_what_is_missing() -> None:
    with pytest.raises(ValueError, match="SECRET_ARN, ARCHIVE_DIR"):
        Settings.from_env({"SLOT_NAME": "s"})


def test_handler_archives_and_emits_metrics(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db.create_slots()
    for i in range(3):
        db.sql(f"INSERT INTO ledger(note) VALUES ('handler-{i}')")
    secret = {
        "host": str(db.pg.socket_dir),
        "port": db.pg.port,
        "username": "postgres",
        "password": "unused-with-trust-auth",
        # An attachment's secret may name no database or another one: DB_NAME decides.
        "dbname": "postgres",
    }
    with mock_aws():
        import boto3

        sm = boto3.client("secretsmanager", region_name="eu-central-2")
        arn = sm.create_secret(Name="rds-txlog-secret-qa7", SecretString=json.dumps(secret))["ARN"]
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-2")
        monkeypatch.setenv("SECRET_ARN", arn)
        kms = boto3.client("kms", region_name="eu-central-2")
        monkeypatch.setenv("INTEGRITY_KEY_ARN", kms.create_key()["KeyMetadata"]["Arn"])
        monkeypatch.setenv("ARCHIVE_DIR", str(tmp_path))
        monkeypatch.setenv("SLOT_NAME", SLOT)
        monkeypatch.setenv("DB_NAME", db.name)
        monkeypatch.setenv("ENVIRONMENT_SUFFIX", "qa7")
        # The fixture's Unix socket carries no TLS: tests/runtime/test_pg_tls.py runs the
        # handler's default (verified) path against the TLS server.
        monkeypatch.setattr(lambda_handler, "tls_from_env", lambda env: dict(LOCAL_SOCKET_TLS))
        # The module-level Logger writes to this test's capture too (its summary line below).
        log_to_current_stdout(lambda_handler.logger, monkeypatch)
        result: dict[str, Any] = lambda_handler.handler({}, Context(seconds=25))
    assert result["transactions"] == 3
    assert result["lag_seconds"] == 0.0
    assert result["stopped_by"] == "idle"
    captured = capsys.readouterr()
    emf = [json.loads(line) for line in captured.out.splitlines() if '"_aws"' in line]
    [record] = emf
    names = {m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {
        "ArchiveLagSeconds",
        "TransactionsArchived",
        "BytesArchived",
        "SegmentsWritten",
        "ArchiveGaps",
        "SlotInvalidations",
        # This cluster sets no max_slot_wal_keep_size: safe_wal_size is NULL, so no
        # SlotSafeWalBytes (tests/runtime/test_txlog_slot_cap.py runs a capped cluster).
        "SlotRetainedWalBytes",
        # Retention (RETENTION_DAYS unset here: nothing pruned, the segments counted).
        "RecordsPruned",
        "BytesPruned",
        "PruneFailures",
        "ArchiveSegments",
    }
    assert record["RecordsPruned"] == [0.0] and record["ArchiveSegments"] == [1.0]
    assert record["SlotInvalidations"] == [0.0]
    assert record["SlotRetainedWalBytes"][0] > 0
    assert result["slot_wal_status"] in {"reserved", "extended"}
    assert result["slot_safe_wal_bytes"] is None
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "govdr/txlog"
    assert record["TransactionsArchived"] == [3.0]
    assert record["Environment"] == "qa7"
    # The log lines are in the capture (the run's summary with the Lambda context), and the
    # secret's password is in neither stream.
    [summary] = [json.loads(x) for x in captured.out.splitlines() if '"archive run"' in x]
    assert (summary["transactions"], summary["function_request_id"]) == (3, "req-1")
    assert "unused-with-trust-auth" not in captured.out + captured.err


def test_lag_reports_an_archive_behind_the_database(db: Db, tmp_path: Path) -> None:
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('old')")
    secret = {
        "host": str(db.pg.socket_dir),
        "port": db.pg.port,
        "username": "postgres",
        "password": "x",
        "dbname": db.name,
    }
    settings = Settings(
        secret_arn="-",
        archive_dir=str(tmp_path),
        slot=SLOT,
        environment="qa7",
        tls=LOCAL_SOCKET_TLS,
    )
    # A zero time budget archives nothing, while the database holds a commit.
    stats, lag = lambda_handler.run_once(settings, secret, lambda: 0.0, keyring(tmp_path))
    assert stats.transactions == 0
    assert lag > 0.0


def test_a_second_run_exits_quietly_while_the_slot_is_read(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault 2: reserved concurrency fails in a fresh account, so none is reserved. Two
    overlapping runs meet at the slot, which admits one reader; the second leaves without error
    or metrics."""
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('while-held')")
    holder = psycopg2.connect(
        db.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    try:
        holder.cursor().start_replication(slot_name=SLOT, decode=False, options=OPTIONS)
        stats, lag = lambda_handler.run_once(
            _settings(tmp_path), _secret(db), lambda: 20.0, keyring(tmp_path)
        )
        assert stats.stopped_by == SLOT_BUSY
        assert (stats.transactions, stats.reconnects, lag) == (0, 0, 0.0)
    finally:
        holder.close()
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]
    # Once the slot is free, the next run archives what the busy one left alone.
    _wait_until_released(db)
    stats, _ = lambda_handler.run_once(
        _settings(tmp_path), _secret(db), lambda: 20.0, keyring(tmp_path)
    )
    assert (stats.stopped_by, stats.transactions) == ("idle", 1)


def test_a_slot_taken_after_a_lost_connection_is_retried_not_skipped(
    db: Db, tmp_path: Path
) -> None:
    """The twin: only a run that has read nothing steps aside. A reconnecting run that meets
    its own old walsender keeps trying (and fails loudly when the slot never frees)."""
    db.create_slots()
    holder = psycopg2.connect(
        db.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    try:
        holder.cursor().start_replication(slot_name=SLOT, decode=False, options=OPTIONS)
        archiver = db.archiver(tmp_path, max_reconnects=2)
        archiver.prepare()
        archiver.stats.reconnects = 1  # as after a dropped replication connection
        with pytest.raises(psycopg2.errors.ObjectInUse):
            archiver.run()
    finally:
        holder.close()


def test_item_13_an_idle_database_whose_newest_commit_is_not_archivable_has_no_lag(
    db: Db, tmp_path: Path
) -> None:
    """Item 13: the lag grew without bound on an empty archive and an idle database, because
    the newest commit (before the slot existed, or in another database of the cluster) is
    never archived. A run that drained the slot reports no lag."""
    db.sql("INSERT INTO ledger(note) VALUES ('before the slot')")
    db.create_slots()
    time.sleep(1.2)
    stats, lag = lambda_handler.run_once(
        _settings(tmp_path), _secret(db), lambda: 20.0, keyring(tmp_path)
    )
    assert (stats.stopped_by, stats.transactions, lag) == ("idle", 0, 0.0)

    db.sql("INSERT INTO ledger(note) VALUES ('archived')")
    stats, lag = lambda_handler.run_once(
        _settings(tmp_path), _secret(db), lambda: 20.0, keyring(tmp_path)
    )
    assert (stats.stopped_by, stats.transactions, lag) == ("idle", 1, 0.0)
    time.sleep(1.2)
    db.pg.psql("CREATE TABLE IF NOT EXISTS elsewhere(x int)")  # a commit in another database
    stats, lag = lambda_handler.run_once(
        _settings(tmp_path), _secret(db), lambda: 20.0, keyring(tmp_path)
    )
    assert (stats.stopped_by, stats.transactions, lag) == ("idle", 0, 0.0)


def _settings(directory: Path) -> Settings:
    return Settings(
        secret_arn="-",
        archive_dir=str(directory),
        slot=SLOT,
        environment="qa7",
        tls=LOCAL_SOCKET_TLS,
    )


def _secret(db: Db) -> dict[str, Any]:
    return {
        "host": str(db.pg.socket_dir),
        "port": db.pg.port,
        "username": "postgres",
        "password": "unused-with-trust-auth",  # trust auth; a password no log may show
        "dbname": db.name,
    }


def _wait_until_released(db: Db) -> None:
    for _ in range(100):
        if db.sql(f"SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'") == "f":
            return
        time.sleep(0.05)
    raise AssertionError("the holder's walsender never released the slot")


def _invoke(db: Db, directory: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    with mock_aws():
        return _invoke_in_moto(db, directory, monkeypatch)


def _invoke_in_moto(db: Db, directory: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One invocation inside an active moto; its secret and KMS key are made on the first."""
    import boto3

    sm = boto3.client("secretsmanager", region_name="eu-central-2")
    kms = boto3.client("kms", region_name="eu-central-2")
    if not kms.list_keys()["Keys"]:
        secret = json.dumps(_secret(db))
        arn = sm.create_secret(Name="rds-txlog-secret-qa7", SecretString=secret)["ARN"]
        monkeypatch.setenv("SECRET_ARN", arn)
        monkeypatch.setenv("INTEGRITY_KEY_ARN", kms.create_key()["KeyMetadata"]["Arn"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-2")
    monkeypatch.setenv("ARCHIVE_DIR", str(directory))
    monkeypatch.setenv("SLOT_NAME", SLOT)
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "qa7")
    monkeypatch.setattr(lambda_handler, "tls_from_env", lambda env: dict(LOCAL_SOCKET_TLS))
    result: dict[str, Any] = lambda_handler.handler({}, Context(seconds=25))
    return result


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def test_item_3_a_stray_file_fails_the_run_loudly_without_a_lag_data_point(
    db: Db,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 3: with a stray FFFFFFFFFFFFFFF0-... file the handler reported success and
    ArchiveLagSeconds 0 while every transaction was skipped. Now the invocation fails (the
    function's Errors metric), logs one error line naming the file, and publishes no lag, so
    the lag alarm (missing data breaches) fires."""
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('after-stray')")
    stray = "FFFFFFFFFFFFFFF0-FFFFFFFFFFFFFFF0_20261122T000000000000Z_20261122T000000000000Z.jsonl"
    (tmp_path / stray).touch()
    before = db.confirmed_flush()
    with pytest.raises(ArchiveError, match=stray):
        _invoke(db, tmp_path, monkeypatch)
    assert _emf(capsys.readouterr().out) == []
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith("archive refused: ") and stray in error
    assert db.confirmed_flush() == before


def test_item_2_a_recorded_gap_is_published_as_a_metric_and_an_error_line(
    db: Db,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 2: a recreated slot lost what was committed in between with the alarms green. Now
    the run that records the gap publishes ArchiveGaps 1 and logs an error."""
    db.create_slots()
    db.sql("INSERT INTO ledger(note) VALUES ('archived')")
    with mock_aws():  # one KMS for both runs: the second opens the key the first created
        assert _invoke_in_moto(db, tmp_path, monkeypatch)["gaps"] == 0
        db.wait_until_slots_inactive()
        db.sql(f"SELECT pg_drop_replication_slot('{SLOT}')")
        db.sql("INSERT INTO ledger(note) VALUES ('lost')")
        capsys.readouterr()
        assert _invoke_in_moto(db, tmp_path, monkeypatch)["gaps"] == 1
    out = capsys.readouterr().out
    [record] = _emf(out)
    assert record["ArchiveGaps"] == [1.0]
    errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelname == "ERROR"]
    assert [name for name, _ in errors] == ["govdr.txlog.runtime.archiver", "txlog-archiver"]
    assert errors[0][1].startswith("archive gap: the changes between")
    assert errors[1][1].startswith("archive gap recorded")
