"""Verified TLS against a real PostgreSQL with TLS (tests/support/pgcluster.py, tls=True).

The server's certificate names only ``localhost`` and is signed by a throwaway CA; TCP logins
are ``hostssl`` and SCRAM only. Each refusal has its twin: the same connection, with what the
refusal is about put right, succeeds.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from moto import mock_aws

from govdr.credentials.runtime import handler as rotation_handler
from govdr.credentials.runtime.handler import SINGLE_USER, RotationError, Rotator, parse_login
from govdr.lambda_support.pg_tls import (
    IAM_TOKEN,
    ROOT_CERT_ENV,
    TlsSetupError,
    tls_from_env,
    verified_tls,
)
from govdr.txlog.runtime import bootstrap
from govdr.txlog.runtime import handler as archiver_handler
from govdr.txlog.runtime.archiver import ensure_slot
from govdr.txlog.runtime.handler import dsn_from_secret
from tests.support.archive_keys import key_file, writable_archive
from tests.support.cdk_provider import answer, reason_of, stack_deleting
from tests.support.lambda_context import LambdaTestContext
from tests.support.pgcluster import Postgres, start_cluster, stop_cluster, write_ca

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-central-2"


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[Postgres]:
    server = start_cluster(tls=True)
    try:
        yield server
    finally:
        stop_cluster(server)


@pytest.fixture
def ca(tls_pg: Postgres) -> Path:
    assert tls_pg.tls is not None
    return tls_pg.tls.ca_file


@pytest.fixture
def database(tls_pg: Postgres) -> Iterator[str]:
    name = f"tls_{uuid.uuid4().hex[:10]}"
    tls_pg.psql(f"CREATE DATABASE {name}")
    tls_pg.psql("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text)", name)
    yield name
    tls_pg.psql(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        f"WHERE database = '{name}' AND NOT active"
    )
    tls_pg.psql(f"DROP DATABASE {name} WITH (FORCE)")


def _connect(secret: dict[str, Any], tls: dict[str, str]) -> Any:
    return psycopg2.connect(dsn_from_secret(secret, tls))


def _session(connection: Any) -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        ssl, version = cursor.fetchone()
    return ssl, version


# --- the TLS session itself -------------------------------------------------------------


def test_verify_full_with_the_servers_ca_connects_over_tls(tls_pg: Postgres, ca: Path) -> None:
    connection = _connect(tls_pg.tcp_secret(), verified_tls(root_cert=ca))
    try:
        ssl, version = _session(connection)
        assert ssl is True and version in ("TLSv1.2", "TLSv1.3")
        params = connection.get_dsn_parameters()
        assert params["sslmode"] == "verify-full"
        assert params["sslrootcert"] == str(ca)
    finally:
        connection.close()


def test_a_certificate_from_another_ca_is_refused(
    tls_pg: Postgres, ca: Path, tmp_path: Path
) -> None:
    """The failing twin of the test above: only the CA file differs."""
    other, _, _ = write_ca(tmp_path, "other")
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        _connect(tls_pg.tcp_secret(), verified_tls(root_cert=other))
    # The default, the pinned RDS roots, does not trust the test CA either.
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        _connect(tls_pg.tcp_secret(), verified_tls())


def test_a_host_name_the_certificate_does_not_name_is_refused(tls_pg: Postgres, ca: Path) -> None:
    """The certificate names localhost; 127.0.0.1 is the same server under another name."""
    secret = {**tls_pg.tcp_secret(), "host": "127.0.0.1"}
    with pytest.raises(psycopg2.OperationalError, match=r'does not match host name "127\.0\.0\.1"'):
        _connect(secret, verified_tls(root_cert=ca))
    # The twin: verify-ca checks the chain but not the name, and connects.
    connection = _connect(secret, {**verified_tls(root_cert=ca), "sslmode": "verify-ca"})
    connection.close()


def test_a_cleartext_password_request_is_refused_before_the_password_is_sent(
    tls_pg: Postgres, ca: Path
) -> None:
    """A server (an impostor with a valid certificate, or a misconfigured pg_hba) that asks for
    the password in clear text never gets it: require_auth=scram-sha-256 makes libpq hang up
    on the request. The server's log proves it: a wrong password that reached it would be
    logged as a failed authentication."""
    user = f"cleartext_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    tls_pg.psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    for address in ("127.0.0.1/32", "::1/128"):
        tls_pg.prepend_hba(f"hostssl all {user} {address} password")
    secret = {**tls_pg.tcp_secret(), "username": user, "password": password}
    # The reload is asynchronous: wait until the server asks this user for a cleartext
    # password, which require_auth=password (RDS IAM tokens) accepts.
    for _ in range(100):
        try:
            _connect(secret, verified_tls(auth=IAM_TOKEN, root_cert=ca)).close()
            break
        except psycopg2.OperationalError:
            time.sleep(0.05)
    else:
        raise AssertionError("pg_hba's password line never took effect")

    log = tls_pg.socket_dir / "server.log"
    failed = f'password authentication failed for user "{user}"'
    wrong = {**secret, "password": "wrong-" + password}
    with pytest.raises(
        psycopg2.OperationalError,
        match='authentication method requirement "scram-sha-256" failed: server requested a '
        "cleartext password",
    ):
        _connect(wrong, verified_tls(root_cert=ca))
    assert failed not in log.read_text()
    # The twin: without require_auth, the same request gets the (wrong) password.
    without = {k: v for k, v in verified_tls(root_cert=ca).items() if k != "require_auth"}
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        _connect(wrong, without)
    assert failed in log.read_text()


# --- the functions' default paths over verified TLS ---------------------------------------


Context = LambdaTestContext


def _archiver_env(
    monkeypatch: pytest.MonkeyPatch, secret: dict[str, Any], directory: Path, dbname: str
) -> None:
    import boto3

    sm = boto3.client("secretsmanager", region_name=REGION)
    arn = sm.create_secret(Name="rds-txlog-secret-tls", SecretString=json.dumps(secret))["ARN"]
    integrity_key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    for name, value in {
        "INTEGRITY_KEY_ARN": integrity_key,
        "AWS_DEFAULT_REGION": REGION,
        "SECRET_ARN": arn,
        "ARCHIVE_DIR": str(directory),
        "SLOT_NAME": "govdr_txlog_tls",
        "DB_NAME": dbname,
        "ENVIRONMENT_SUFFIX": "tls",
    }.items():
        monkeypatch.setenv(name, value)


def test_the_archiver_handler_archives_over_verified_tls(
    tls_pg: Postgres,
    ca: Path,
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Lambda's own path (secret, Settings.from_env, DSN, replication) over TLS + SCRAM;
    pg_hba admits TCP only as hostssl with scram-sha-256."""
    connection = psycopg2.connect(tls_pg.dsn(database))
    connection.autocommit = True
    with connection.cursor() as cursor:
        ensure_slot(cursor, "govdr_txlog_tls")
    connection.close()
    tls_pg.psql("INSERT INTO ledger(note) VALUES ('one'), ('two')", database)
    tls_pg.psql("INSERT INTO ledger(note) VALUES ('three')", database)
    with mock_aws():
        _archiver_env(monkeypatch, tls_pg.tcp_secret(), tmp_path, database)
        # The twin first: with the pinned RDS roots (no override) the test server is refused.
        monkeypatch.delenv(ROOT_CERT_ENV, raising=False)
        with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
            archiver_handler.handler({}, Context(seconds=25))
        monkeypatch.setenv(ROOT_CERT_ENV, str(ca))
        result = archiver_handler.handler({}, Context(seconds=25))
    assert result["transactions"] == 2
    assert result["stopped_by"] == "idle"


def test_a_missing_ca_file_fails_the_archiver_with_one_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "missing.pem"
    for name, value in {
        "SECRET_ARN": "arn:aws:secretsmanager:eu-central-2:123456789012:secret:x",
        "ARCHIVE_DIR": str(tmp_path),
        "SLOT_NAME": "govdr_txlog_tls",
        "INTEGRITY_KEY_ARN": "arn:aws:kms:eu-central-2:123456789012:key/x",
        ROOT_CERT_ENV: str(missing),
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(TlsSetupError):
        archiver_handler.handler({}, Context(seconds=25))
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = error.getMessage()
    assert message.startswith(f"TLS setup failed: CA bundle {missing} does not exist")
    assert "\n" not in message and error.exc_info is None


def test_a_missing_setting_fails_the_archiver_with_one_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a ValueError's traceback from Settings.from_env. Now: one error line naming
    what is missing, and an exception without the chain of where it came from."""
    for name in ("SECRET_ARN", "SLOT_NAME", "INTEGRITY_KEY_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARCHIVE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="SECRET_ARN, SLOT_NAME, INTEGRITY_KEY_ARN") as refused:
        archiver_handler.handler({}, Context(seconds=25))
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = error.getMessage()
    assert message == (
        "the function's configuration is refused: environment variables not set: "
        "SECRET_ARN, SLOT_NAME, INTEGRITY_KEY_ARN"
    )
    assert error.exc_info is None


def _bootstrap_event(url: str, slot: str, database: str) -> dict[str, Any]:
    return {
        "RequestType": "Create",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:eu-central-2:123456789012:stack/TapStacktls/1",
        "RequestId": "req-tls",
        "LogicalResourceId": "TxlogBootstrapCustomResource",
        "ResourceProperties": {
            "MasterSecretArn": "master",
            "ReplicationSecretArn": "replication",
            "SlotName": slot,
            "DatabaseName": database,
        },
    }


def test_the_bootstrap_logs_in_as_master_over_verified_tls(
    tls_pg: Postgres,
    ca: Path,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    response_url: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = response_url
    user = f"govdr_txlog_{uuid.uuid4().hex[:8]}"
    slot = f"govdr_txlog_{uuid.uuid4().hex[:8]}"
    secrets = {
        "master": tls_pg.tcp_secret(),
        "replication": {**tls_pg.tcp_secret(database), "username": user, "password": "p" * 24},
    }
    own = bootstrap.OwnEnvironment(slot, "master", "replication")
    event = _bootstrap_event(url, slot, database)
    # The twin first: the default roots (the pinned RDS CAs) refuse the test server.
    monkeypatch.delenv(ROOT_CERT_ENV, raising=False)
    answer(
        event,
        lambda e: bootstrap.handle(
            e, secrets.__getitem__, psycopg2.connect, stack_status=stack_deleting, own=own
        ),
    )
    assert bodies[-1]["Status"] == "FAILED"
    assert "certificate verify failed" in reason_of(bodies[-1])
    monkeypatch.setenv(ROOT_CERT_ENV, str(ca))
    try:
        answer(
            event,
            lambda e: bootstrap.handle(
                e, secrets.__getitem__, psycopg2.connect, stack_status=stack_deleting, own=own
            ),
        )
        assert bodies[-1]["Status"] == "SUCCESS", reason_of(bodies[-1])
        assert tls_pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{user}'") == "1"
    finally:
        tls_pg.psql(f"DROP ROLE IF EXISTS {user}")


def test_a_missing_ca_file_fails_the_bootstrap_with_a_one_line_reason(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    response_url: tuple[str, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, bodies = response_url
    missing = tmp_path / "missing.pem"
    monkeypatch.setenv(ROOT_CERT_ENV, str(missing))
    slot = "govdr_txlog_tls"
    own = bootstrap.OwnEnvironment(slot, "master", "replication")

    def no_secret(arn: str) -> dict[str, Any]:
        raise AssertionError("no secret is read without a CA to verify with")

    with caplog.at_level(logging.INFO):
        answer(
            _bootstrap_event(url, slot, "govdr"),
            lambda e: bootstrap.handle(
                e, no_secret, psycopg2.connect, stack_status=stack_deleting, own=own
            ),
        )
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert reason_of(body).startswith(f"CA bundle {missing} does not exist")
    assert "\n" not in reason_of(body)
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.exc_info is None and str(missing) in error.getMessage()


def test_the_rotation_logs_in_over_verified_tls(tls_pg: Postgres, ca: Path) -> None:
    login = parse_login(json.dumps(tls_pg.tcp_secret()), "the AWSCURRENT version of s")
    rotator = Rotator(
        client=None,
        connect=psycopg2.connect,
        strategy=SINGLE_USER,
        tls=tls_from_env({ROOT_CERT_ENV: str(ca)}),
    )
    connection = rotator.open(login)
    assert connection is not None
    try:
        assert _session(connection)[0] is True
    finally:
        connection.close()
    # The twin: the default, the pinned RDS roots, refuses the test server with one line.
    default = Rotator(client=None, connect=psycopg2.connect, strategy=SINGLE_USER)
    with pytest.raises(RotationError, match=r"cannot reach the database .*certificate verify"):
        default.open(login)


def test_a_missing_ca_file_fails_the_rotation_step_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "missing.pem"
    monkeypatch.setenv(ROOT_CERT_ENV, str(missing))
    monkeypatch.setenv("ROTATION_STRATEGY", SINGLE_USER)
    monkeypatch.setenv("AWS_REGION", REGION)
    with pytest.raises(RotationError) as raised:
        rotation_handler.handler({}, Context(seconds=25))
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert str(raised.value).startswith(f"CA bundle {missing} does not exist")
    [error] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error == f"rotation step failed: {raised.value}"


# --- operator commands: a DSN without sslmode is verified ----------------------------------


def _archiver_cli(dsn: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != ROOT_CERT_ENV}
    command = [sys.executable, "-m", "govdr.txlog.runtime", "--dsn", dsn]
    return subprocess.run(
        [*command, "--dir", str(tmp_path), "--slot", "govdr_txlog_absent", "--key-file", "k"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**base, "PGPASSFILE": str(tmp_path / "none"), **env},
        timeout=60,
    )


def test_the_archiver_cli_verifies_a_dsn_without_sslmode(
    tls_pg: Postgres, ca: Path, database: str, tmp_path: Path
) -> None:
    assert tls_pg.password is not None
    dsn = f"host=localhost port={tls_pg.port} dbname={database} user=postgres"
    # Connected (verified) and asked for the slot, which does not exist.
    done = _archiver_cli(dsn, tmp_path, PGPASSWORD=tls_pg.password, **{ROOT_CERT_ENV: str(ca)})
    assert done.returncode == 2
    assert "replication slot 'govdr_txlog_absent' does not exist" in done.stderr
    # The twin: the pinned RDS roots do not trust the test server.
    refused = _archiver_cli(dsn, tmp_path, PGPASSWORD=tls_pg.password)
    assert refused.returncode == 2
    [line] = refused.stderr.splitlines()
    assert line.startswith("txlog-archiver: database error:")
    assert "certificate verify failed" in line
    missing = _archiver_cli(dsn, tmp_path, **{ROOT_CERT_ENV: str(tmp_path / "x.pem")})
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"txlog-archiver: CA bundle {tmp_path / 'x.pem'} does not exist: the server's "
        "certificate cannot be verified, so no connection is opened. Pass the file holding the "
        "CA that signed the server's certificate (for RDS in eu-central-2: "
        "rds-ca-eu-central-2.pem, shipped with govdr)"
    ]


def test_replay_verifies_a_target_dsn_without_sslmode(
    tls_pg: Postgres,
    ca: Path,
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from govdr.cli.main import main

    assert tls_pg.password is not None
    monkeypatch.setenv("PGPASSWORD", tls_pg.password)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    archive = tmp_path / "archive"
    archive.mkdir()
    writable_archive(archive)  # an empty archive: a manifest and its key
    dsn = f"host=localhost port={tls_pg.port} dbname={database} user=postgres"
    argv = ["txlog", "replay", "--dir", str(archive), "--key-file", str(key_file(archive))]
    argv += ["--target-dsn", dsn]
    argv += ["--start-lsn", "0/0", "--until", "2030-01-01T00:00:00+00:00", "--json"]
    # The twin first: with the pinned RDS roots the test server is refused, in one line.
    monkeypatch.delenv(ROOT_CERT_ENV, raising=False)
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("govdr: cannot connect to the target database:")
    assert "certificate verify failed" in line
    monkeypatch.setenv(ROOT_CERT_ENV, str(ca))
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["applied"] == 0
    monkeypatch.setenv(ROOT_CERT_ENV, str(tmp_path / "x.pem"))
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"govdr: CA bundle {tmp_path / 'x.pem'} does not exist")
