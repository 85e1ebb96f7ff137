"""Custom::TxlogBootstrap against a real PostgreSQL (password authentication for every role
but the fixture's superuser) and a real HTTP endpoint for CloudFormation's response."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

from govdr.txlog.runtime import bootstrap
from govdr.txlog.runtime.archive import Archive
from govdr.txlog.runtime.archiver import Archiver
from govdr.txlog.runtime.handler import Settings, dsn_from_secret, run_once
from tests.runtime.conftest import Db
from tests.support.archive_keys import key_file, keyring
from tests.support.cdk_provider import answer, reason_of, stack_deleting
from tests.support.pgcluster import LOCAL_SOCKET_TLS

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
        self.own = bootstrap.OwnEnvironment(self.slot, MASTER_ARN, REPLICATION_ARN)

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
            "LogicalResourceId": "TxlogBootstrapCustomResource",
            "ResourceProperties": props,
        }

    def connect(self, dsn: str) -> Any:
        # The fixture's Unix socket carries no TLS (LOCAL_SOCKET_TLS); the verified default
        # is run against the TLS server in tests/runtime/test_pg_tls.py.
        connection = psycopg2.connect(dsn)
        with connection.cursor() as cursor:
            # Every statement of the bootstrap goes to the server log, to look for the password.
            cursor.execute("SET log_statement = 'all'")
        connection.commit()
        return connection

    def handle(self, url: str, request_type: str, **overrides: str) -> None:
        self.run(self.event(url, request_type, **overrides))

    def run(
        self,
        event: dict[str, Any],
        read_secret: Callable[[str], Mapping[str, Any]] | None = None,
        connect: Callable[[str], Any] | None = None,
        stack_status: Callable[[str], str] = stack_deleting,
        **kw: Any,
    ) -> None:
        """``event`` through the custom-resource framework to the bootstrap, with this setup's
        secrets, database and environment unless given."""
        answer(
            event,
            lambda e: bootstrap.handle(
                e,
                read_secret or self.secrets.get,
                connect or self.connect,
                stack_status=stack_status,
                own=self.own,
                tls=LOCAL_SOCKET_TLS,
                **kw,
            ),
        )

    def user_dsn(self) -> str:
        return dsn_from_secret(self.secrets[REPLICATION_ARN], LOCAL_SOCKET_TLS)

    def cleanup(self) -> None:
        self.db.pg.psql(
            f"SELECT pg_drop_replication_slot('{self.slot}') FROM pg_replication_slots "
            f"WHERE slot_name = '{self.slot}'"
        )
        self.db.pg.psql(f"DROP ROLE IF EXISTS {self.username}")
        # The drills' login is one per cluster: no test leaves it behind for the next.
        connection = psycopg2.connect(self.db.dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            bootstrap.drop_drill_role(cursor)
        connection.close()


def no_secret_read(arn: str) -> Mapping[str, Any]:
    raise AssertionError(f"{arn} was read")


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
    assert body["Status"] == "SUCCESS", reason_of(body)
    assert body["PhysicalResourceId"] == f"txlog-bootstrap:{setup.username}"
    assert body["Data"]["created"] is True
    assert body["Data"]["replication"] == "REPLICATION"  # plain PostgreSQL: no rds_replication

    # The user logs in with the secret's password (scram-sha-256 in pg_hba) and not without it.
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(setup.user_dsn().replace(setup.password, "wrong-password"))

    def archiver() -> Archiver:
        return Archiver(
            archive=Archive(tmp_path),
            keyring=keyring(tmp_path),
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
        tls=LOCAL_SOCKET_TLS,
    )
    setup.db.sql("INSERT INTO ledger(note) VALUES ('lag-probe')")
    run_stats, lag = run_once(
        settings, setup.secrets[REPLICATION_ARN], lambda: 20.0, keyring(tmp_path)
    )
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
    assert bodies[-1]["Status"] == "SUCCESS", reason_of(bodies[-1])
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


@pytest.mark.parametrize(
    "status",
    [
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    ],
)
def test_a_delete_outside_a_stack_deletion_drops_nothing(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]], status: str
) -> None:
    """A replaced resource (a new logical ID, or the framework's new service token) gets its
    Delete during the update's cleanup, after its successor's Create: dropping the slot and the
    users then would cut the archive off. Only a stack deletion drops them (the twin is the
    test above, with the stack DELETE_IN_PROGRESS)."""
    url, bodies = response_url
    setup.handle(url, "Create")
    _create_slot(setup, setup.slot)
    event = setup.event(url, "Delete")
    event["PhysicalResourceId"] = bodies[-1]["PhysicalResourceId"]
    # a Delete that drops nothing reads no secret
    setup.run(event, read_secret=no_secret_read, stack_status=lambda _: status)
    body = bodies[-1]
    assert body["Status"] == "SUCCESS", reason_of(body)
    assert body["Data"] == {
        "Skipped": f"stack is {status}; the slot and the users are dropped only while the "
        "stack is DELETE_IN_PROGRESS or ROLLBACK_IN_PROGRESS"
    }
    assert _slot_count(setup, setup.slot) == "1"
    roles = setup.db.pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{setup.username}'")
    assert roles == "1"


def test_delete_does_not_block_teardown_when_the_database_is_gone(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    setup.run(setup.event(url, "Delete"), connect=unreachable)
    [body] = bodies
    assert body["Status"] == "SUCCESS"
    assert "could not connect to server" in body["Data"]["database_unreachable"]


def test_create_fails_clearly_when_the_database_is_unreachable(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    setup.run(setup.event(url, "Create"), connect=unreachable)
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert "OperationalError: could not connect" in reason_of(body)


def test_missing_properties_are_named(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    setup.handle(url, "Create", SlotName="", MasterSecretArn="")
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert reason_of(body) == (
        "ResourceProperties missing: MasterSecretArn, SlotName; nothing was changed"
    )
    # What CloudFormation shows: the reason, then where the handler logged it.
    assert body["Reason"].startswith(f"Error: {reason_of(body)}\n\nLogs: /aws/lambda/")


class PasswordMaster:
    """A master user that logs in with a password, and a secret read that can change it."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.user = f"govdr_admin_{uuid.uuid4().hex[:8]}"
        self.password = secrets.token_urlsafe(24)
        setup.db.pg.psql(f"CREATE ROLE {self.user} SUPERUSER LOGIN PASSWORD '{self.password}'")
        setup.secrets[MASTER_ARN] = {
            **setup.secrets[MASTER_ARN],
            "username": self.user,
            "password": self.password,
        }
        self.reads = 0
        self.sleeps: list[float] = []
        self.rotate_after_first_read = False

    def read_secret(self, arn: str) -> Mapping[str, Any]:
        value = self.setup.secrets[arn]
        if arn == MASTER_ARN:
            self.reads += 1
            if self.rotate_after_first_read and self.reads == 1:
                # The master rotation's setSecret and finishSecret land between this read and
                # the login: the database and AWSCURRENT now hold a new password.
                new = secrets.token_urlsafe(24)
                self.setup.db.pg.psql(f"ALTER ROLE {self.user} PASSWORD '{new}'")
                self.setup.secrets[MASTER_ARN] = {**value, "password": new}
        return value

    def handle(self, url: str) -> None:
        self.setup.run(
            self.setup.event(url, "Create"), read_secret=self.read_secret, sleep=self.sleeps.append
        )

    def drop(self) -> None:
        self.setup.db.pg.psql(f"DROP ROLE IF EXISTS {self.user}")


@pytest.fixture
def password_master(setup: Setup) -> Iterator[PasswordMaster]:
    master = PasswordMaster(setup)
    yield master
    master.drop()


def test_fault_5_a_master_password_rotated_after_the_read_is_retried_with_awscurrent(
    setup: Setup,
    password_master: PasswordMaster,
    response_url: tuple[str, list[dict[str, Any]]],
) -> None:
    """Fault 5: the master secret's first rotation raced the bootstrap, which read the
    master secret and then logged in with a password that had just been replaced. The login
    is refused once; the bootstrap reads AWSCURRENT again and succeeds."""
    url, bodies = response_url
    password_master.rotate_after_first_read = True
    password_master.handle(url)
    [body] = bodies
    assert body["Status"] == "SUCCESS", reason_of(body)
    assert body["Data"]["created"] is True
    assert password_master.reads == 2
    assert password_master.sleeps == [bootstrap.AUTH_RETRY_DELAYS[0]]
    psycopg2.connect(setup.user_dsn()).close()  # the archiver's login exists and works


def test_fault_5_a_wrong_master_password_fails_clearly_after_the_retries(
    setup: Setup,
    password_master: PasswordMaster,
    response_url: tuple[str, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The twin: a password the database never had fails after every retry, with the reason
    and the fix in the response and the log, and no stack trace."""
    url, bodies = response_url
    wrong = secrets.token_urlsafe(24)
    setup.secrets[MASTER_ARN] = {**setup.secrets[MASTER_ARN], "password": wrong}
    password_master.handle(url)
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert reason_of(body) == (
        "the database refused the master secret's AWSCURRENT credentials 4 times within 14 s "
        f'(connection to server on socket "{setup.db.pg.socket_dir}/.s.PGSQL.'
        f'{setup.db.pg.port}" failed: FATAL:  password authentication failed for user '
        f'"{password_master.user}"). Put the database\'s master password into the secret (or '
        "reset it with modify-db-instance --master-user-password), then retry the stack "
        "operation"
    )
    assert wrong not in reason_of(body)
    assert password_master.reads == 4
    assert password_master.sleeps == list(bootstrap.AUTH_RETRY_DELAYS)
    assert all(record.exc_info is None for record in caplog.records)
    assert wrong not in caplog.text
    assert (
        setup.db.pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{setup.username}'") == "0"
    )


def _slot_count(setup: Setup, slot: str) -> str:
    return setup.db.pg.psql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'")


def _create_slot(setup: Setup, slot: str) -> None:
    setup.db.pg.psql(
        f"SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')", dbname=setup.db.name
    )


def test_item_12_delete_with_a_foreign_slot_drops_nothing_and_fails_clearly(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """Item 12: the bootstrap trusted its event, so a Delete naming any slot dropped it with the
    master credentials. A Delete naming another slot (or another secret) drops nothing, keeps
    the users, and fails with the reason; the failing twin is the own slot, which is dropped."""
    url, bodies = response_url
    setup.handle(url, "Create")
    foreign = f"govdr_txlog_other_{uuid.uuid4().hex[:8]}"
    _create_slot(setup, foreign)
    _create_slot(setup, setup.slot)
    try:
        setup.handle(url, "Delete", SlotName=foreign)
        body = bodies[-1]
        assert body["Status"] == "FAILED"
        assert reason_of(body).startswith(
            f"SlotName '{foreign}' is not this environment's '{setup.slot}'. Nothing was changed"
        )
        assert _slot_count(setup, foreign) == "1"
        assert _slot_count(setup, setup.slot) == "1"
        assert (
            setup.db.pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{setup.username}'")
            == "1"
        )
        setup.handle(url, "Delete", MasterSecretArn=MASTER_ARN + "-other")
        assert bodies[-1]["Status"] == "FAILED"
        assert "MasterSecretArn" in reason_of(bodies[-1])
        assert _slot_count(setup, setup.slot) == "1"
        # Twin: the own slot is dropped.
        setup.handle(url, "Delete")
        assert bodies[-1]["Status"] == "SUCCESS", reason_of(bodies[-1])
        assert _slot_count(setup, setup.slot) == "0"
        assert _slot_count(setup, foreign) == "1"
    finally:
        setup.db.pg.psql(f"SELECT pg_drop_replication_slot('{foreign}')")


def test_item_12_a_renamed_slot_drops_the_old_one(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """Item 12: changing the slot name never dropped the old slot, which then kept WAL forever.
    An Update whose OldResourceProperties name another slot creates the new slot, then drops
    the old one; the failing twin (an Update without a rename) keeps the slot."""
    url, bodies = response_url
    old = f"govdr_txlog_old_{uuid.uuid4().hex[:8]}"
    setup.handle(url, "Create")
    _create_slot(setup, old)
    event = setup.event(url, "Update")
    # Twin first: the same name before and after drops nothing.
    event["OldResourceProperties"] = {**event["ResourceProperties"], "SlotName": setup.slot}
    setup.run(event)
    assert bodies[-1]["Status"] == "SUCCESS", reason_of(bodies[-1])
    assert "old_slot_dropped" not in bodies[-1]["Data"]
    assert _slot_count(setup, old) == "1"

    event["OldResourceProperties"]["SlotName"] = old
    setup.run(event)
    body = bodies[-1]
    assert body["Status"] == "SUCCESS", reason_of(body)
    assert body["Data"]["old_slot"] == old
    assert body["Data"]["old_slot_dropped"] is True
    assert body["Data"]["slot_created"] is True
    assert _slot_count(setup, old) == "0"
    assert _slot_count(setup, setup.slot) == "1"


def test_item_12_an_old_slot_outside_the_product_names_is_not_dropped(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """Item 12: OldResourceProperties come from the event too; an old slot that is not a
    govdr_txlog_<suffix> name is refused, nothing dropped."""
    url, bodies = response_url
    other = f"app_slot_{uuid.uuid4().hex[:8]}"
    _create_slot(setup, other)
    try:
        event = setup.event(url, "Update")
        event["OldResourceProperties"] = {**event["ResourceProperties"], "SlotName": other}
        setup.run(event)
        assert bodies[-1]["Status"] == "FAILED"
        assert "is not a slot name of this product" in reason_of(bodies[-1])
        assert _slot_count(setup, other) == "1"
    finally:
        setup.db.pg.psql(f"SELECT pg_drop_replication_slot('{other}')")


ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The archive's key file lies beside the --dir given.
    keys = ["--key-file", str(key_file(Path(args[args.index("--dir") + 1])))]
    return subprocess.run(
        [sys.executable, "-m", "govdr.txlog.runtime", *args, *keys],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_item_12_cli_without_slot_exits_2_with_one_line(tmp_path: Path) -> None:
    """Item 12: the CLI defaulted to slot govdr_txlog (another environment's name). --slot is
    required: without it the exit is 2 with one line naming it; the failing twin with --slot
    gets past the arguments (the DSN check answers)."""
    result = _cli("--dsn", "host=/nonexistent", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "python -m govdr.txlog.runtime: the following arguments are required: --slot (see --help)"
    ]
    twin = _cli("--dsn", "host=h password=x", "--dir", str(tmp_path), "--slot", "s")
    assert "--slot" not in twin.stderr


def test_item_12_cli_rejects_a_dsn_with_a_password(tmp_path: Path) -> None:
    """Item 12: the password went in --dsn, visible to every user in ps. A DSN with a password
    (key=value or URI) is refused with one line that does not echo it."""
    for dsn in ("host=localhost user=u password=hunter2", "postgresql://u:hunter2@localhost/db"):
        result = _cli("--dsn", dsn, "--dir", str(tmp_path), "--slot", "govdr_txlog_x")
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith("txlog-archiver: --dsn contains a password")
        assert "PGPASSWORD" in line
        assert "hunter2" not in line
    assert not list(tmp_path.iterdir())


def test_item_12_cli_creates_a_slot_only_with_create_slot(db: Db, tmp_path: Path) -> None:
    """Item 12: the CLI created any slot it was given (a typo made a slot that kept WAL).
    Without --create-slot a missing slot exits 2 and nothing is created; with it the slot is
    created and the run succeeds. The password comes from PGPASSWORD, not the DSN."""
    slot = f"govdr_txlog_cli_{uuid.uuid4().hex[:8]}"
    user = f"govdr_cli_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(16)
    db.pg.psql(f"CREATE ROLE {user} LOGIN REPLICATION SUPERUSER PASSWORD '{password}'")
    # A DSN naming its own sslmode is kept (a Unix socket carries no TLS).
    dsn = f"host={db.pg.socket_dir} port={db.pg.port} dbname={db.name} user={user} sslmode=disable"
    env = {"PGPASSWORD": password, "PGPASSFILE": str(tmp_path / "none")}
    archive = tmp_path / "archive"
    archive.mkdir()
    try:
        missing = _cli("--dsn", dsn, "--dir", str(archive), "--slot", slot, env=env)
        assert missing.returncode == 2, missing.stderr
        assert missing.stderr.splitlines() == [
            f"txlog-archiver: replication slot '{slot}' does not exist on the server; check "
            "--slot, or pass --create-slot to create it"
        ]
        count = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        assert db.pg.psql(count) == "0"
        created = _cli(
            "--dsn",
            dsn,
            "--dir",
            str(archive),
            "--slot",
            slot,
            "--create-slot",
            "--idle",
            "0.2",
            env=env,
        )
        assert created.returncode == 0, created.stderr
        assert db.pg.psql(count) == "1"
    finally:
        db.pg.psql(
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = '{slot}'"
        )
        db.pg.psql(f"DROP ROLE IF EXISTS {user}")


def _drill_login(setup: Setup) -> Any:
    """Log in as the drills' user. RDS would check an IAM token (rds_iam); plain PostgreSQL
    has no IAM, so the test gives the role a password of its own for this one login."""
    token = secrets.token_urlsafe(24)
    setup.db.pg.psql(f"ALTER ROLE {bootstrap.DRILL_ROLE} PASSWORD '{token}'")
    return psycopg2.connect(
        host=str(setup.db.pg.socket_dir),
        port=setup.db.pg.port,
        user=bootstrap.DRILL_ROLE,
        password=token,
        dbname=setup.db.name,
    )


def _role(setup: Setup, column: str) -> str:
    # pg_authid, not pg_roles: only it shows whether a password is set.
    return setup.db.pg.psql(
        f"SELECT {column} FROM pg_authid WHERE rolname = '{bootstrap.DRILL_ROLE}'"
    )


def test_create_makes_the_drill_login_that_runs_the_drills_probes_and_nothing_more(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """The drills' probes (SELECT 1; the restore canary) work as govdr_drill; reading or
    writing an application table, or creating one, does not."""
    from govdr.drills.restore import CANARY

    url, bodies = response_url
    setup.db.sql("INSERT INTO ledger(note) VALUES ('citizen record')")
    setup.handle(url, "Create")
    [body] = bodies
    assert body["Status"] == "SUCCESS", reason_of(body)
    assert body["Data"]["drill_user"] == "govdr_drill"
    assert body["Data"]["drill_user_created"] is True
    assert body["Data"]["drill_database"] == setup.db.name
    assert body["Data"]["drill_iam"] is False  # plain PostgreSQL: no rds_iam to grant
    flags = "rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin"
    assert _role(setup, flags) == "f|f|f|f|f|t"
    assert _role(setup, "rolpassword IS NULL") == "t"  # no password: IAM tokens only

    connection = _drill_login(setup)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
            cursor.execute(CANARY)
            (count,) = cursor.fetchone()
            assert count > 0
            for statement, error in (
                ("SELECT note FROM ledger", psycopg2.errors.InsufficientPrivilege),
                ("INSERT INTO ledger(note) VALUES ('x')", psycopg2.errors.ReadOnlySqlTransaction),
                ("CREATE TABLE drill_table (id int)", psycopg2.errors.ReadOnlySqlTransaction),
            ):
                with pytest.raises(error):
                    cursor.execute(statement)
            # With the read-only default turned off, the privileges still refuse.
            cursor.execute("SET default_transaction_read_only = off")
            for statement in (
                "INSERT INTO ledger(note) VALUES ('x')",
                "UPDATE ledger SET note = 'changed'",
                "DELETE FROM ledger",
                "CREATE TABLE drill_table (id int)",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cursor.execute(statement)
    finally:
        connection.close()
    assert setup.db.sql("SELECT note FROM ledger") == "citizen record"


def test_the_fixture_superuser_can_read_the_table_the_drill_login_cannot(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """The failing twin: the same statements as an application owner succeed, so the refusals
    above come from govdr_drill's privileges and not from the table or the statements."""
    url, _ = response_url
    setup.handle(url, "Create")
    setup.db.sql("INSERT INTO ledger(note) VALUES ('x')")
    assert setup.db.sql("SELECT count(*) FROM ledger") == "1"
    # Granting the table to the drill login by hand is exactly what makes it readable.
    setup.db.sql(f"GRANT SELECT ON ledger TO {bootstrap.DRILL_ROLE}")
    connection = _drill_login(setup)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM ledger")
            assert cursor.fetchone() == (1,)
    finally:
        connection.close()
    setup.db.sql(f"REVOKE SELECT ON ledger FROM {bootstrap.DRILL_ROLE}")


def test_rds_iam_is_granted_to_the_drill_login_where_it_exists(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    setup.db.pg.psql("CREATE ROLE rds_iam NOLOGIN")  # what RDS has
    try:
        url, bodies = response_url
        setup.handle(url, "Create")
        assert bodies[-1]["Data"]["drill_iam"] is True
        member = setup.db.pg.psql(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = 'rds_iam' "
            f"AND u.rolname = '{bootstrap.DRILL_ROLE}'"
        )
        assert member == "1"
    finally:
        setup.db.pg.psql(f"REVOKE rds_iam FROM {bootstrap.DRILL_ROLE}")
        setup.db.pg.psql("DROP ROLE rds_iam")


def test_update_converges_a_drill_login_changed_by_hand(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """Create and Update are idempotent for the drill login, and an Update takes back a
    password, a write attribute or a lifted read-only default given to it meanwhile."""
    url, bodies = response_url
    setup.handle(url, "Create")
    setup.db.pg.psql(
        f"ALTER ROLE {bootstrap.DRILL_ROLE} WITH CREATEDB CREATEROLE PASSWORD 'by-hand' "
        "CONNECTION LIMIT -1"
    )
    setup.db.pg.psql(f"ALTER ROLE {bootstrap.DRILL_ROLE} RESET ALL")
    assert _role(setup, "rolcreatedb, rolcreaterole, rolpassword IS NULL") == "t|t|f"
    setup.handle(url, "Update")
    setup.handle(url, "Create")
    assert [b["Status"] for b in bodies] == ["SUCCESS"] * 3
    assert [b["Data"]["drill_user_created"] for b in bodies] == [True, False, False]
    assert _role(setup, "rolcreatedb, rolcreaterole, rolpassword IS NULL") == "f|f|t"
    assert _role(setup, "rolconnlimit") == str(bootstrap.DRILL_CONNECTION_LIMIT)
    settings = setup.db.pg.psql(
        "SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s "
        f"JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = '{bootstrap.DRILL_ROLE}'"
    )
    assert settings == "default_transaction_read_only=on,statement_timeout=10s"


def test_delete_drops_the_drill_login(
    setup: Setup, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    setup.handle(url, "Create")
    assert _role(setup, "count(*)") == "1"
    setup.handle(url, "Delete")
    assert bodies[-1]["Status"] == "SUCCESS", reason_of(bodies[-1])
    assert bodies[-1]["Data"]["drill_user_dropped"] is True
    assert (
        setup.db.pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{bootstrap.DRILL_ROLE}'")
        == "0"
    )
    setup.handle(url, "Delete")
    assert bodies[-1]["Data"]["drill_user_dropped"] is False
