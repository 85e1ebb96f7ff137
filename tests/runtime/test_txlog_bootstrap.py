"""Custom::TxlogBootstrap against a real PostgreSQL (password authentication for every role
but the fixture's superuser) and a real HTTP endpoint for CloudFormation's response."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

from runtime.txlog_archiver import bootstrap
from runtime.txlog_archiver.archive import Archive
from runtime.txlog_archiver.archiver import Archiver
from runtime.txlog_archiver.handler import Settings, dsn_from_secret, run_once
from tests.runtime.conftest import Db

MASTER_ARN = "arn:aws:secretsmanager:eu-central-2:123456789012:secret:rds-master-secret-qa-AbCdEf"
REPLICATION_ARN = (
    "arn:aws:secretsmanager:eu-central-2:123456789012:secret:rds-txlog-secret-qa-GhIjKl"
)


class Setup:
    def __init__(self, db: Db) -> None:
        self.db = db
        self.username = f"govdr_txlog_{uuid.uuid4().hex[:8]}"
        self.slot = f"govdr_txlog_slot_{uuid.uuid4().hex[:8]}"
        # Generated per run: nothing secret is stored in the repository.
        self.password = secrets.token_urlsafe(24)
        host = str(db.pg.socket_dir)
        self.secrets: dict[str, Mapping[str, Any]] = {
            MASTER_ARN: {
                "host": host,
                "port": db.pg.port,
                "username": "postgres",
                "password": "not-checked-for-the-fixture-superuser",
                "dbname": "postgres",  # the DatabaseName property decides where it connects
            },
            REPLICATION_ARN: {
                "host": host,
                "port": db.pg.port,
                "username": self.username,
                "password": self.password,
                "dbname": db.name,
            },
        }
        self.statements_logged = False

    def event(self, url: str, request_type: str, **overrides: str) -> dict[str, Any]:
        props = {
            "MasterSecretArn": MASTER_ARN,
            "ReplicationSecretArn": REPLICATION_ARN,
            "SlotName": self.slot,
            "DatabaseName": self.db.name,
            **overrides,
        }
        return {
            "RequestType": request_type,
            "ResponseURL": url,
            "StackId": "arn:aws:cloudformation:eu-central-2:123456789012:stack/TapStackqa/1",
            "RequestId": f"req-{request_type}",
            "LogicalResourceId": "TxlogBootstrapResource",
            "ResourceProperties": props,
        }

    def connect(self, dsn: str) -> Any:
        # sslmode=require in the DSN: the fixture has no TLS; RDS forces it (rds.force_ssl).
        connection = psycopg2.connect(dsn.replace("sslmode=require", "sslmode=disable"))
        with connection.cursor() as cursor:
            # Every statement of the bootstrap goes to the server log, to look for the password.
            cursor.execute("SET log_statement = 'all'")
        connection.commit()
        return connection

    def handle(self, url: str, request_type: str, **overrides: str) -> None:
        bootstrap.handle(self.event(url, request_type, **overrides), self.secrets.get, self.connect)

    def user_dsn(self) -> str:
        return dsn_from_secret(self.secrets[REPLICATION_ARN], "disable")

    def cleanup(self) -> None:
        self.db.pg.psql(
            f"SELECT pg_drop_replication_slot('{self.slot}') FROM pg_replication_slots "
            f"WHERE slot_name = '{self.slot}'"
        )
        self.db.pg.psql(f"DROP ROLE IF EXISTS {self.username}")


def unreachable(_dsn: str) -> Any:
    raise psycopg2.OperationalError("could not connect to server: Connection refused")


@pytest.fixture
def setup(db: Db) -> Iterator[Setup]:
    s = Setup(db)
    yield s
    s.cleanup()


def test_create_makes_a_replication_user_that_archives_as_itself(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, bodies = response_url
    setup.handle(url, "Create")
    [body] = bodies
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert body["PhysicalResourceId"] == f"txlog-bootstrap:{setup.username}"
    assert body["Data"]["created"] is True
    assert body["Data"]["replication"] == "REPLICATION"  # plain PostgreSQL: no rds_replication

    # The user logs in with the secret's password (scram-sha-256 in pg_hba) and not without it.
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(setup.user_dsn().replace(setup.password, "wrong-password"))

    def archiver() -> Archiver:
        return Archiver(
            archive=Archive(tmp_path),
            slot=setup.slot,
            connect_sql=lambda: psycopg2.connect(setup.user_dsn()),
            connect_replication=lambda: psycopg2.connect(
                setup.user_dsn(), connection_factory=psycopg2.extras.LogicalReplicationConnection
            ),
            idle_seconds=0.5,
        )

    assert archiver().run().transactions == 0  # creates its slot as the replication user
    setup.db.sql("INSERT INTO ledger(note) VALUES ('as-replication-user')")
    assert archiver().run().transactions == 1

    # The Lambda's lag query works with the replication user's rights.
    settings = Settings(
        secret_arn=REPLICATION_ARN,
        archive_dir=str(tmp_path),
        slot=setup.slot,
        environment="qa",
        sslmode="disable",
    )
    setup.db.sql("INSERT INTO ledger(note) VALUES ('lag-probe')")
    run_stats, lag = run_once(settings, setup.secrets[REPLICATION_ARN], lambda: 20.0)
    assert run_stats.transactions == 1
    assert lag == 0.0

    # The password never reached the server log in clear text: a SCRAM verifier was sent.
    log = (setup.db.pg.socket_dir / "server.log").read_text(errors="replace")
    assert f'CREATE ROLE "{setup.username}" WITH LOGIN PASSWORD \'SCRAM-SHA-256$' in log
    assert setup.password not in log


def test_create_and_update_are_idempotent(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    setup.handle(url, "Create")
    setup.handle(url, "Update")
    setup.handle(url, "Create")
    assert [b["Status"] for b in bodies] == ["SUCCESS"] * 3
    assert [b["Data"]["created"] for b in bodies] == [True, False, False]
    psycopg2.connect(setup.user_dsn()).close()  # the password was not changed by the repeats


def test_rds_replication_role_is_granted_where_it_exists(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    setup.db.pg.psql("CREATE ROLE rds_replication NOLOGIN")
    try:
        url, bodies = response_url
        setup.handle(url, "Create")
        [body] = bodies
        assert body["Data"]["replication"] == "rds_replication"
        member = setup.db.pg.psql(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            f"JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = 'rds_replication' "
            f"AND u.rolname = '{setup.username}'"
        )
        assert member == "1"
    finally:
        setup.db.pg.psql(f"REVOKE rds_replication FROM {setup.username}")
        setup.db.pg.psql("DROP ROLE rds_replication")


def test_delete_drops_an_active_slot_and_the_users(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    setup.handle(url, "Create")
    clone = setup.username + bootstrap.CLONE_SUFFIX
    setup.db.pg.psql(f"CREATE ROLE {clone} LOGIN IN ROLE {setup.username}")
    # An archiver that is still streaming holds the slot: the delete must end it first.
    holder = psycopg2.connect(
        setup.user_dsn(), connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    cursor = holder.cursor()
    cursor.create_replication_slot(setup.slot, output_plugin="wal2json")
    cursor.start_replication(slot_name=setup.slot, decode=False)
    assert (
        setup.db.pg.psql(
            f"SELECT active FROM pg_replication_slots WHERE slot_name = '{setup.slot}'"
        )
        == "t"
    )

    setup.handle(url, "Delete")
    assert bodies[-1]["Status"] == "SUCCESS", bodies[-1]["Reason"]
    assert bodies[-1]["Data"]["slot_dropped"] is True
    left = setup.db.pg.psql(
        f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{setup.slot}'"
    )
    assert left == "0"
    roles = setup.db.pg.psql(
        f"SELECT count(*) FROM pg_roles WHERE rolname IN ('{setup.username}', '{clone}')"
    )
    assert roles == "0"
    holder.close()

    setup.handle(url, "Delete")  # a repeated delete finds nothing and still succeeds
    assert bodies[-1]["Status"] == "SUCCESS"
    assert bodies[-1]["Data"]["slot_dropped"] is False


def test_delete_does_not_block_teardown_when_the_database_is_gone(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    bootstrap.handle(setup.event(url, "Delete"), setup.secrets.get, unreachable)
    [body] = bodies
    assert body["Status"] == "SUCCESS"
    assert "database unreachable" in body["Reason"]


def test_create_fails_clearly_when_the_database_is_unreachable(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    bootstrap.handle(setup.event(url, "Create"), setup.secrets.get, unreachable)
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert "OperationalError: could not connect" in body["Reason"]


def test_missing_properties_are_named(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    setup.handle(url, "Create", SlotName="", MasterSecretArn="")
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert body["Reason"] == "ResourceProperties missing: MasterSecretArn, SlotName"
