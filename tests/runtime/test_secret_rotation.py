"""The rotation function (govdr/credentials/runtime) against a real PostgreSQL, where every role
but the fixture's superuser logs in with a SCRAM password as on RDS, and moto's Secrets Manager.

Fault 7 of the first-deploy review: both secrets were rotated by hosted rotation, which adds
the ``AWS::SecretsManager-2024-09-16`` transform and creates a python3.10 function (deprecated,
creation blocked from 2027-02-01). The rotation is now ours, and proven here step by step.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from moto import mock_aws

from govdr.credentials.runtime.handler import (
    ALTERNATING_USERS,
    MASTER_RETRY_DELAYS,
    PENDING,
    SINGLE_USER,
    STEPS,
    RotationError,
    Rotator,
)
from govdr.credentials.runtime.handler import LOG as rotation_logger
from govdr.txlog.runtime import bootstrap
from govdr.txlog.runtime import handler as archiver_handler
from govdr.txlog.runtime.archive import Archive
from tests.runtime.conftest import SLOT, WITNESS, Db
from tests.support.lambda_context import LambdaTestContext
from tests.support.pgcluster import LOCAL_SOCKET_TLS, Postgres

REGION = "eu-central-2"
ACCOUNT = "123456789012"  # moto's default account


def _password() -> str:
    # Generated per run: nothing secret is stored in the repository.
    return secrets.token_urlsafe(24)


@dataclass
class World:
    """A master role and an archiver login in the database, their secrets in Secrets Manager,
    and Secrets Manager's side of a rotation (staging a new version AWSPENDING, then calling
    the four steps in order)."""

    db: Db
    sm: Any
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    durations: dict[str, list[float]] = field(default_factory=dict)
    # The function's waits: recorded instead of slept; ``during_sleep`` acts while it waits.
    sleeps: list[float] = field(default_factory=list)
    during_sleep: Callable[[float], None] | None = None

    def __post_init__(self) -> None:
        self.master_user = f"govdr_admin_{self.suffix}"
        self.txlog_user = f"govdr_txlog_{self.suffix}"
        self.roles = [self.master_user, self.txlog_user, self.txlog_user + "_clone"]
        master_password = _password()
        # The master user of RDS is not a superuser but may create roles and grant
        # rds_replication; on plain PostgreSQL 15 only a superuser grants REPLICATION.
        self.pg.psql(f"CREATE ROLE {self.master_user} SUPERUSER LOGIN PASSWORD '{master_password}'")
        # Every statement of the master user goes to the server log, to look for passwords.
        self.pg.psql(f"ALTER ROLE {self.master_user} SET log_statement = 'all'")
        self.master_arn = self._secret(
            f"rds-master-secret-{self.suffix}",
            {"username": self.master_user, "password": master_password, "dbname": "postgres"},
        )
        txlog_password = _password()
        as_master = self.connect(self.login(self.master_arn))
        try:
            bootstrap.prepare(as_master, self.txlog_user, txlog_password)
        finally:
            as_master.close()
        self.txlog_arn = self._secret(
            f"rds-txlog-secret-{self.suffix}",
            {
                "username": self.txlog_user,
                "password": txlog_password,
                "dbname": self.db.name,
                "masterarn": self.master_arn,
            },
        )

    @property
    def pg(self) -> Postgres:
        return self.db.pg

    def _secret(self, name: str, fields: dict[str, Any]) -> str:
        value = {"engine": "postgres", "host": str(self.pg.socket_dir), "port": self.pg.port}
        arn: str = self.sm.create_secret(Name=name, SecretString=json.dumps({**value, **fields}))[
            "ARN"
        ]
        from moto.secretsmanager.models import secretsmanager_backends

        # As after RotateSecret (or a RotationSchedule) configured the rotation.
        secret = secretsmanager_backends[ACCOUNT][REGION].secrets[arn]
        secret.rotation_requested = secret.rotation_enabled = True
        return arn

    def connect(self, dsn: str) -> Any:
        # The fixture's Unix socket carries no TLS (LOCAL_SOCKET_TLS); the function's verified
        # default is run against the TLS server in tests/runtime/test_pg_tls.py.
        return psycopg2.connect(dsn)

    def rotator(self, strategy: str) -> Rotator:
        return Rotator(
            client=self.sm,
            connect=self.connect,
            strategy=strategy,
            tls=LOCAL_SOCKET_TLS,
            exclude_characters=" %+~`#$&*()|[]{}:;<>?!'/@\"\\",
            sleep=self._sleep,
        )

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.during_sleep is not None:
            self.during_sleep(seconds)

    def value(self, arn: str, stage: str = "AWSCURRENT", token: str | None = None) -> Any:
        request = {"SecretId": arn, "VersionStage": stage}
        if token:
            request["VersionId"] = token
        return json.loads(self.sm.get_secret_value(**request)["SecretString"])

    def login(self, arn: str, stage: str = "AWSCURRENT") -> str:
        v = self.value(arn, stage)
        return (
            f"host={v['host']} port={v['port']} user={v['username']} password={v['password']} "
            f"dbname={v.get('dbname') or 'postgres'} sslmode=disable"
        )

    def logs_in(self, arn: str, stage: str = "AWSCURRENT") -> bool:
        try:
            psycopg2.connect(self.login(arn, stage)).close()
        except psycopg2.OperationalError as exc:
            assert "password authentication failed" in str(exc)
            return False
        return True

    def stages(self, arn: str) -> dict[str, list[str]]:
        return dict(self.sm.describe_secret(SecretId=arn)["VersionIdsToStages"])

    def start(self, arn: str) -> str:
        """What RotateSecret does before it invokes the function: a new version ID, staged
        AWSPENDING, without a value (moto's RotateSecret without a function would instead
        promote the version at once)."""
        from moto.secretsmanager.models import secretsmanager_backends

        secret = secretsmanager_backends[ACCOUNT][REGION].secrets[arn]
        secret.remove_version_stages_from_old_versions([PENDING])
        token = str(uuid.uuid4())
        secret.versions[token] = {
            "createdate": int(time.time()),
            "version_id": token,
            "version_stages": [PENDING],
        }
        return token

    def step(self, strategy: str, arn: str, token: str, step: str) -> str:
        started = time.perf_counter()
        outcome = self.rotator(strategy).rotate(
            {"SecretId": arn, "ClientRequestToken": token, "Step": step}
        )
        self.durations.setdefault(f"{strategy} {step}", []).append(
            round(time.perf_counter() - started, 4)
        )
        return outcome

    def rotate(self, strategy: str, arn: str) -> str:
        token = self.start(arn)
        for step in STEPS:
            self.step(strategy, arn, token, step)
        return token

    def cleanup(self) -> None:
        for role in reversed(self.roles):
            self.pg.psql(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def world(db: Db) -> Iterator[World]:
    with mock_aws():
        import boto3

        w = World(db, boto3.client("secretsmanager", region_name=REGION))
        try:
            yield w
        finally:
            w.cleanup()
            print(json.dumps({"rotation step seconds": w.durations}))


@pytest.mark.control("IA-5(1)")
def test_fault_7_single_user_rotation_runs_each_step_and_each_again(world: World) -> None:
    """Fault 7: the master secret's rotation is ours. All four steps, each run twice with
    the same token (Secrets Manager retries a step): the second run changes nothing."""
    before = world.value(world.master_arn)
    first_version = next(v for v, s in world.stages(world.master_arn).items() if "AWSCURRENT" in s)
    token = world.start(world.master_arn)

    assert world.step(SINGLE_USER, world.master_arn, token, "createSecret").startswith(
        f"created the pending version for {world.master_user}"
    )
    pending = world.value(world.master_arn, PENDING, token)
    assert world.step(SINGLE_USER, world.master_arn, token, "createSecret") == (
        f"the pending version for {world.master_user} exists"
    )
    assert world.value(world.master_arn, PENDING, token) == pending  # not generated again
    assert pending["username"] == before["username"]
    assert pending["password"] != before["password"]
    assert len(pending["password"]) == 32
    assert not set(pending["password"]) & set(" %+~`#$&*()|[]{}:;<>?!'/@\"\\")
    assert {k: v for k, v in pending.items() if k != "password"} == {
        k: v for k, v in before.items() if k != "password"
    }

    assert world.step(SINGLE_USER, world.master_arn, token, "setSecret") == (
        f"set the password of {world.master_user}"
    )
    assert world.step(SINGLE_USER, world.master_arn, token, "setSecret") == (
        f"the pending password of {world.master_user} is already set"
    )
    assert world.logs_in(world.master_arn, PENDING)
    assert not world.logs_in(world.master_arn, "AWSCURRENT")  # single user: the old one is gone

    for _ in range(2):
        assert world.step(SINGLE_USER, world.master_arn, token, "testSecret") == (
            f"logged in as {world.master_user}"
        )
    assert world.step(SINGLE_USER, world.master_arn, token, "finishSecret") == (
        f"moved AWSCURRENT from {first_version} to {token}"
    )
    assert world.step(SINGLE_USER, world.master_arn, token, "finishSecret") == "already current"
    stages = world.stages(world.master_arn)
    assert "AWSCURRENT" in stages[token]
    assert stages[first_version] == ["AWSPREVIOUS"]
    assert world.value(world.master_arn) == pending
    assert world.logs_in(world.master_arn)

    # The password never reached the server log in clear text: SCRAM verifiers were sent.
    log = (world.pg.socket_dir / "server.log").read_text(errors="replace")
    assert f'ALTER ROLE "{world.master_user}" WITH LOGIN PASSWORD \'SCRAM-SHA-256$' in log
    assert pending["password"] not in log


def test_fault_7_alternating_users_clone_the_login_and_keep_the_current_one_working(
    world: World,
) -> None:
    """Fault 7: the archiver's login rotates with alternating users. The first rotation
    creates ``<user>_clone`` with the original's REPLICATION and role memberships; each
    rotation changes only the user that is not current, so AWSCURRENT keeps logging in."""
    reader = f"govdr_reader_{world.suffix}"
    world.roles.append(reader)
    world.pg.psql(f"CREATE ROLE {reader} NOLOGIN")
    world.pg.psql(f"GRANT {reader} TO {world.txlog_user}")
    clone = world.txlog_user + "_clone"
    original = world.value(world.txlog_arn)

    token = world.start(world.txlog_arn)
    for step in STEPS:
        world.step(ALTERNATING_USERS, world.txlog_arn, token, step)
        # Each step again: nothing more happens, and the current login works all along.
        again = world.step(ALTERNATING_USERS, world.txlog_arn, token, step)
        if step == "createSecret":
            assert again == f"the pending version for {clone} exists"
        if step == "setSecret":
            assert again == f"the pending password of {clone} is already set"
        if step == "finishSecret":
            assert again == "already current"
        assert world.logs_in(world.txlog_arn)
    first = world.value(world.txlog_arn)
    assert first["username"] == clone
    assert first["masterarn"] == world.master_arn
    assert world.logs_in(world.txlog_arn, "AWSPREVIOUS")  # the original still logs in
    rights = world.pg.psql(
        f"SELECT rolreplication, rolcanlogin, pg_has_role('{clone}', '{world.txlog_user}', "
        f"'MEMBER'), pg_has_role('{clone}', '{reader}', 'MEMBER') FROM pg_roles "
        f"WHERE rolname = '{clone}'"
    )
    assert rights == "t|t|t|t"

    # Second rotation: the original gets a new password, the clone (current) is untouched.
    world.rotate(ALTERNATING_USERS, world.txlog_arn)
    second = world.value(world.txlog_arn)
    assert second["username"] == world.txlog_user
    assert second["password"] != original["password"]
    assert world.logs_in(world.txlog_arn) and world.logs_in(world.txlog_arn, "AWSPREVIOUS")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            f"host={original['host']} port={original['port']} user={original['username']} "
            f"password={original['password']} dbname=postgres sslmode=disable"
        )

    # Third: the clone again, now an existing role whose password changes.
    world.rotate(ALTERNATING_USERS, world.txlog_arn)
    assert world.value(world.txlog_arn)["username"] == clone
    assert world.value(world.txlog_arn)["password"] != first["password"]
    assert world.logs_in(world.txlog_arn) and world.logs_in(world.txlog_arn, "AWSPREVIOUS")
    assert world.pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{clone}'") == "1"


def test_fault_7_a_failing_test_step_leaves_awscurrent_working_and_unpromoted(
    world: World,
) -> None:
    """Fault 7: testSecret fails when setSecret has not set the password; AWSCURRENT stays
    the version it was and keeps logging in, and the same token completes once set."""
    current = next(v for v, s in world.stages(world.master_arn).items() if "AWSCURRENT" in s)
    token = world.start(world.master_arn)
    world.step(SINGLE_USER, world.master_arn, token, "createSecret")
    with pytest.raises(RotationError) as failed:
        world.step(SINGLE_USER, world.master_arn, token, "testSecret")
    assert str(failed.value) == (
        f"the AWSPENDING credentials of {world.master_arn} do not log in as "
        f"{world.master_user}: setSecret did not set them (see its log entry). AWSCURRENT is "
        "unchanged; fix the cause, then rotate again"
    )
    stages = world.stages(world.master_arn)
    assert stages[token] == [PENDING]
    assert "AWSCURRENT" in stages[current]
    assert world.logs_in(world.master_arn)

    # Secrets Manager retries the rotation with the same token: the steps resume.
    for step in ("setSecret", "testSecret", "finishSecret"):
        world.step(SINGLE_USER, world.master_arn, token, step)
    assert "AWSCURRENT" in world.stages(world.master_arn)[token]
    assert world.logs_in(world.master_arn)


def test_fault_7_a_clone_without_the_originals_rights_fails_the_test_step(world: World) -> None:
    """The twin of the rights check: a clone that lost REPLICATION cannot stream, so
    testSecret fails and the original stays current."""
    clone = world.txlog_user + "_clone"
    token = world.start(world.txlog_arn)
    for step in ("createSecret", "setSecret"):
        world.step(ALTERNATING_USERS, world.txlog_arn, token, step)
    world.pg.psql(f"ALTER ROLE {clone} NOREPLICATION")
    with pytest.raises(RotationError) as failed:
        world.step(ALTERNATING_USERS, world.txlog_arn, token, "testSecret")
    assert str(failed.value) == (
        f"{clone} lacks REPLICATION of {world.txlog_user}; grant it, then rotate again"
    )
    assert world.value(world.txlog_arn)["username"] == world.txlog_user


def _streaming_user(db: Any) -> tuple[int, str]:
    """(pid, user) of the walsender that reads the slot, once one does."""
    for _ in range(200):
        row = db.pg.psql(
            "SELECT a.pid || '|' || a.usename FROM pg_replication_slots s "
            f"JOIN pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = '{SLOT}'"
        )
        if row:
            pid, user = row.split("|")
            return int(pid), user
        time.sleep(0.05)
    raise AssertionError("the archiver never started streaming")


def _released(db: Any) -> None:
    # The walsender of a finished run exits a moment after its client closed.
    for _ in range(200):
        if db.sql(f"SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'") == "f":
            return
        time.sleep(0.05)
    raise AssertionError("the slot was never released")


def _run_archiver(seconds: float) -> tuple[threading.Thread, list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: results.append(archiver_handler.handler({}, LambdaTestContext(seconds))),
        daemon=True,
    )
    thread.start()
    return thread, results


def test_fault_7_the_archiver_keeps_streaming_across_rotations_of_its_own_user(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault 7: the archiver streams as AWSCURRENT while its secret rotates; its next run
    reads the new AWSCURRENT and logs in as that user; no transaction is lost or doubled."""
    db = world.db
    db.create_slots()
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "SECRET_ARN": world.txlog_arn,
        "ARCHIVE_DIR": str(tmp_path),
        "SLOT_NAME": SLOT,
        "DB_NAME": db.name,
        "ENVIRONMENT_SUFFIX": "qa7",
        "INTEGRITY_KEY_ARN": boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"][
            "Arn"
        ],
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(archiver_handler, "tls_from_env", lambda env: dict(LOCAL_SOCKET_TLS))
    inserted = 0

    def insert(n: int) -> None:
        nonlocal inserted
        for _ in range(n):
            db.sql(f"INSERT INTO ledger(note) VALUES ('txn-{inserted}')")
            inserted += 1

    insert(5)
    # Run 1 streams as the original user while its secret rotates to the clone.
    run, results = _run_archiver(15 + 30)
    pid, user = _streaming_user(db)
    assert user == world.txlog_user
    token = world.start(world.txlog_arn)
    for step in STEPS:
        insert(3)
        world.step(ALTERNATING_USERS, world.txlog_arn, token, step)
    insert(3)
    assert _streaming_user(db) == (pid, world.txlog_user)  # the same walsender, never dropped
    run.join(timeout=60)
    assert results and results[0]["stopped_by"] == "idle", results
    _released(db)

    # Run 2 reads the new AWSCURRENT and streams as the clone.
    insert(4)
    run, results = _run_archiver(15 + 30)
    _, user = _streaming_user(db)
    assert user == world.txlog_user + "_clone"
    # The next rotation changes the original's password while the clone streams.
    old = world.login(world.txlog_arn, "AWSPREVIOUS")
    world.rotate(ALTERNATING_USERS, world.txlog_arn)
    insert(2)
    run.join(timeout=60)
    assert results and results[0]["stopped_by"] == "idle", results
    _released(db)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(old)

    # Run 3 logs in as the original with its new password.
    insert(2)
    run, results = _run_archiver(15 + 30)
    _, user = _streaming_user(db)
    assert user == world.txlog_user
    run.join(timeout=60)
    assert results and results[0]["stopped_by"] == "idle", results
    _released(db)

    archived = [txn["xid"] for txn in Archive(tmp_path).transactions()]
    witness = db.witness_xids()
    assert len(witness) >= inserted == 5 + 12 + 3 + 4 + 2 + 2
    assert archived == witness
    assert db.sql(
        f"SELECT count(*) FROM pg_logical_slot_peek_changes('{WITNESS}', NULL, NULL) "
        "WHERE data LIKE 'COMMIT %'"
    ) == str(len(archived))


def test_fault_7_a_hostile_username_is_rejected_before_any_statement(world: World) -> None:
    """A secret whose username is an SQL injection attempt never reaches a statement: the
    step fails with what is allowed, and the database is unchanged."""
    victim = f"govdr_victim_{world.suffix}"
    world.roles.append(victim)
    world.pg.psql(f"CREATE ROLE {victim} NOLOGIN")
    hostile = f'x" SUPERUSER; DROP ROLE {victim}; --'
    value = world.value(world.txlog_arn)
    world.sm.put_secret_value(
        SecretId=world.txlog_arn, SecretString=json.dumps({**value, "username": hostile})
    )
    token = world.start(world.txlog_arn)
    for step in ("createSecret", "setSecret"):
        with pytest.raises(RotationError) as failed:
            world.step(ALTERNATING_USERS, world.txlog_arn, token, step)
        assert str(failed.value) == (
            f"the AWSCURRENT version of {world.txlog_arn} names the user {hostile!r}, which is "
            "not a plain PostgreSQL identifier: use letters, digits, _ and $, starting with a "
            "letter or _, at most 57 characters (the alternate user adds _clone)"
        )
    assert world.pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{victim}'") == "1"
    assert world.pg.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'x%'") == "0"


def test_fault_7_identifiers_are_quoted_so_mixed_case_names_rotate(world: World) -> None:
    """The quoting twin: a legal name that only works quoted (capitals and ``$``) rotates
    as exactly that role; an unquoted statement would have changed ``govdr$mixed...``."""
    mixed = f"GovDr$Mixed_{world.suffix}"
    password = _password()
    world.roles += [mixed, mixed + "_clone"]
    world.pg.psql(f"CREATE ROLE \"{mixed}\" LOGIN REPLICATION PASSWORD '{password}'")
    value = world.value(world.txlog_arn)
    world.sm.put_secret_value(
        SecretId=world.txlog_arn,
        SecretString=json.dumps({**value, "username": mixed, "password": password}),
    )
    world.rotate(ALTERNATING_USERS, world.txlog_arn)
    assert world.value(world.txlog_arn)["username"] == mixed + "_clone"
    assert world.logs_in(world.txlog_arn)
    rights = world.pg.psql(f"SELECT rolreplication FROM pg_roles WHERE rolname = '{mixed}_clone'")
    assert rights == "t"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            "not-an-object",
            "invalid rotation event: expected an object with SecretId, ClientRequestToken and "
            "Step, got str; invoke the function only through rotate-secret",
        ),
        (
            {"Step": "rotateEverything", "ClientRequestToken": "short"},
            "invalid rotation event: SecretId (the secret's ARN) is missing; "
            "ClientRequestToken must be 32 to 64 printable characters; Step 'rotateEverything' "
            "is not one of createSecret, setSecret, testSecret, finishSecret. Secrets Manager "
            "sends these three fields; invoke the function only through rotate-secret",
        ),
    ],
)
def test_fault_7_invalid_events_are_named(world: World, event: Any, message: str) -> None:
    with pytest.raises(RotationError) as failed:
        world.rotator(SINGLE_USER).rotate(event)
    assert str(failed.value) == message


def test_fault_7_versions_not_staged_for_rotation_are_refused(world: World) -> None:
    current = next(v for v, s in world.stages(world.master_arn).items() if "AWSCURRENT" in s)
    unknown = str(uuid.uuid4())
    with pytest.raises(RotationError, match=f"version {unknown} of .* has no stage"):
        world.step(SINGLE_USER, world.master_arn, unknown, "createSecret")
    # The current version itself: nothing to do, whatever the step.
    assert world.step(SINGLE_USER, world.master_arn, current, "setSecret") == "already current"
    token = world.start(world.master_arn)
    world.step(SINGLE_USER, world.master_arn, token, "createSecret")
    world.sm.update_secret_version_stage(
        SecretId=world.master_arn, VersionStage=PENDING, RemoveFromVersionId=token
    )
    with pytest.raises(RotationError, match="is not staged AWSPENDING"):
        world.step(SINGLE_USER, world.master_arn, token, "setSecret")
    from moto.secretsmanager.models import secretsmanager_backends

    secretsmanager_backends[ACCOUNT][REGION].secrets[world.master_arn].rotation_enabled = False
    with pytest.raises(RotationError, match="is not enabled for rotation"):
        world.step(SINGLE_USER, world.master_arn, token, "setSecret")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "is not JSON (Expecting property name enclosed in double quotes at "),
        ('["a"]', "holds a JSON list; it must hold a JSON object with username, password"),
        ('{"username": "u", "host": "h"}', "lacks password, masterarn; it must hold"),
        (
            '{"username": "u", "password": "%s", "host": "h", "masterarn": "m", "port": 99999}',
            "has port '99999'; it must be 1 to 65535",
        ),
        (
            '{"username": "u", "password": "%s", "host": "h", "masterarn": "m", "engine": "mysql"}',
            "is for engine 'mysql'; this rotates PostgreSQL",
        ),
    ],
)
def test_fault_7_a_malformed_secret_is_a_clear_error_without_its_value(
    world: World, value: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = _password()
    world.sm.put_secret_value(SecretId=world.txlog_arn, SecretString=value.replace("%s", password))
    token = world.start(world.txlog_arn)
    with caplog.at_level(logging.INFO), pytest.raises(RotationError) as failed:
        world.step(ALTERNATING_USERS, world.txlog_arn, token, "createSecret")
    assert str(failed.value).startswith(f"the AWSCURRENT version of {world.txlog_arn} ")
    assert message in str(failed.value)
    assert password not in str(failed.value)
    assert password not in caplog.text


def test_fault_7_no_password_in_the_logs_of_a_rotation(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):
            world.rotate(ALTERNATING_USERS, world.txlog_arn)
        world.rotate(SINGLE_USER, world.master_arn)
    entries = [
        r
        for r in caplog.records
        if r.name == rotation_logger.name and r.getMessage() == "rotation step"
    ]
    assert [e.__dict__["step"] for e in entries] == list(STEPS) * 3
    passwords = [
        world.value(arn, stage)["password"]
        for arn in (world.txlog_arn, world.master_arn)
        for stage in ("AWSCURRENT", "AWSPREVIOUS")
    ]
    # Every record whole (message, arguments and the structured fields Powertools writes).
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for password in passwords:
        assert password not in logged
    # The twin: a record carrying a password would be caught.
    assert (
        passwords[0]
        in f"{entries[0].getMessage()} { ({**entries[0].__dict__, 'x': passwords[0]}) }"
    )


def test_fault_7_an_unreachable_database_is_named_with_the_fix(world: World) -> None:
    value = world.value(world.master_arn)
    world.sm.put_secret_value(
        SecretId=world.master_arn, SecretString=json.dumps({**value, "port": 1})
    )
    token = world.start(world.master_arn)
    world.step(SINGLE_USER, world.master_arn, token, "createSecret")
    with pytest.raises(RotationError) as failed:
        world.step(SINGLE_USER, world.master_arn, token, "setSecret")
    text = str(failed.value)
    assert text.startswith(f"cannot reach the database {value['host']}:1 as {world.master_user}: ")
    assert text.endswith(
        "check rotation-sg's egress to the database and the database's ingress on its port"
    )
    assert value["password"] not in text


def test_fault_7_an_unknown_strategy_is_named() -> None:
    with pytest.raises(RotationError, match="ROTATION_STRATEGY 'hosted' is not one of"):
        Rotator(client=None, connect=psycopg2.connect, strategy="hosted")


def test_fault_7_single_user_falls_back_to_awsprevious_after_a_restore(world: World) -> None:
    """A database restored from a snapshot taken before the last rotation knows only the
    AWSPREVIOUS password: the next rotation logs in with it and sets the new one."""
    world.rotate(SINGLE_USER, world.master_arn)
    previous = world.value(world.master_arn, "AWSPREVIOUS")
    world.pg.psql(f"ALTER ROLE {world.master_user} PASSWORD '{previous['password']}'")
    assert not world.logs_in(world.master_arn)
    token = world.rotate(SINGLE_USER, world.master_arn)
    assert "AWSCURRENT" in world.stages(world.master_arn)[token]
    assert world.logs_in(world.master_arn)


def test_fault_7_single_user_without_a_working_password_names_the_fix(world: World) -> None:
    """The twin: neither AWSCURRENT nor AWSPREVIOUS logs in; setSecret says what to do."""
    world.pg.psql(f"ALTER ROLE {world.master_user} PASSWORD '{_password()}'")
    token = world.start(world.master_arn)
    world.step(SINGLE_USER, world.master_arn, token, "createSecret")
    with pytest.raises(RotationError) as failed:
        world.step(SINGLE_USER, world.master_arn, token, "setSecret")
    assert str(failed.value) == (
        f"neither the AWSCURRENT nor the AWSPREVIOUS credentials of {world.master_arn} log in "
        f"as {world.master_user}: the password was changed outside Secrets Manager. Put the "
        "database's password into the secret (put-secret-value, AWSCURRENT), then rotate again"
    )
    assert world.stages(world.master_arn)[token] == [PENDING]


def test_fault_7_set_before_create_is_a_clear_error(world: World) -> None:
    token = world.start(world.txlog_arn)
    with pytest.raises(RotationError) as failed:
        world.step(ALTERNATING_USERS, world.txlog_arn, token, "setSecret")
    assert str(failed.value) == (
        f"{world.txlog_arn} has no AWSPENDING value for version {token} (createSecret has not "
        "run for it)"
    )


def test_fault_7_the_archiver_login_rotates_while_the_master_rotates(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault 7 (the two first rotations collide): both schedules start their first rotation
    as CloudFormation creates them, and RotateSecret is asynchronous. The master's setSecret
    changed the master password while its AWSCURRENT still held the old one, so the archiver
    login's setSecret, logging in as the master with AWSCURRENT, was refused and its rotation
    failed with AWSPENDING left behind. It now logs in with the master's AWSPENDING."""
    master_token = world.start(world.master_arn)
    for step in ("createSecret", "setSecret"):
        world.step(SINGLE_USER, world.master_arn, master_token, step)
    assert not world.logs_in(world.master_arn)  # the gap: the database has the new password
    assert world.logs_in(world.master_arn, PENDING)

    clone = world.txlog_user + "_clone"
    txlog_token = world.start(world.txlog_arn)
    outcomes = {}
    with caplog.at_level(logging.INFO):
        for step in STEPS:
            outcomes[step] = world.step(ALTERNATING_USERS, world.txlog_arn, txlog_token, step)
    assert outcomes["setSecret"] == (
        f"created {clone} as the master user with the master secret's AWSPENDING password"
    )
    assert world.sleeps == []  # the pending password logs in at once: no wait
    assert "AWSCURRENT" in world.stages(world.txlog_arn)[txlog_token]
    assert world.value(world.txlog_arn)["username"] == clone

    for step in ("testSecret", "finishSecret"):
        world.step(SINGLE_USER, world.master_arn, master_token, step)
    assert "AWSCURRENT" in world.stages(world.master_arn)[master_token]
    assert world.logs_in(world.master_arn)
    assert world.logs_in(world.txlog_arn) and world.logs_in(world.txlog_arn, "AWSPREVIOUS")
    # The next rotation of the archiver's login uses the master's new AWSCURRENT.
    assert world.step(
        ALTERNATING_USERS, world.txlog_arn, world.start(world.txlog_arn), "createSecret"
    ) == (f"created the pending version for {world.txlog_user}")
    for password in (
        world.value(world.master_arn)["password"],
        world.value(world.master_arn, "AWSPREVIOUS")["password"],
        world.value(world.txlog_arn)["password"],
    ):
        assert password not in caplog.text


@pytest.mark.parametrize("master_rotating", [True, False], ids=["master-rotating", "master-idle"])
def test_fault_7_a_master_password_in_no_version_fails_after_bounded_retries(
    world: World, caplog: pytest.LogCaptureFixture, master_rotating: bool
) -> None:
    """The twin: the master password was changed to one that neither the master secret's
    AWSCURRENT nor its AWSPENDING holds. setSecret tries both four times, waits only
    MASTER_RETRY_DELAYS (14 s in all, the function has 60 s), then fails with what to do;
    no password reaches the message or the log, and the archiver's AWSCURRENT still works."""
    if master_rotating:
        master_token = world.start(world.master_arn)
        world.step(SINGLE_USER, world.master_arn, master_token, "createSecret")
    outside = _password()
    world.pg.psql(f"ALTER ROLE {world.master_user} PASSWORD '{outside}'")
    txlog_token = world.start(world.txlog_arn)
    world.step(ALTERNATING_USERS, world.txlog_arn, txlog_token, "createSecret")
    with caplog.at_level(logging.INFO), pytest.raises(RotationError) as failed:
        world.step(ALTERNATING_USERS, world.txlog_arn, txlog_token, "setSecret")
    refused = (
        "its AWSCURRENT and its AWSPENDING passwords"
        if master_rotating
        else "its AWSCURRENT password (it has no other AWSPENDING password)"
    )
    assert str(failed.value) == (
        f"the master secret {world.master_arn} named by {world.txlog_arn} does not log in as "
        f"{world.master_user}: the database refused {refused} 4 times within 14 s. Put the "
        "database's master password into the master secret (put-secret-value, AWSCURRENT; "
        "reset it with modify-db-instance --master-user-password if it is unknown), then "
        f"rotate {world.txlog_arn} again"
    )
    assert world.sleeps == list(MASTER_RETRY_DELAYS) == [2.0, 4.0, 8.0]
    warnings = [json.loads(r.getMessage()) for r in caplog.records if r.levelname == "WARNING"]
    assert [(w["attempt"], w["retry_in_seconds"]) for w in warnings] == [
        (1, 2.0),
        (2, 4.0),
        (3, 8.0),
    ]
    passwords = [outside, world.value(world.master_arn)["password"]]
    passwords.append(world.value(world.txlog_arn, PENDING, txlog_token)["password"])
    if master_rotating:
        passwords.append(world.value(world.master_arn, PENDING, master_token)["password"])
    for password in passwords:
        assert password not in str(failed.value)
        assert password not in caplog.text
    assert world.stages(world.txlog_arn)[txlog_token] == [PENDING]
    assert world.logs_in(world.txlog_arn)
    clone = world.txlog_user + "_clone"
    assert world.pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{clone}'") == "0"


def test_fault_7_a_master_awscurrent_that_changes_during_the_wait_is_read_again(
    world: World,
) -> None:
    """The retry reads the master secret again: the master's rotation finishes (AWSCURRENT
    now holds the database's password) while setSecret waits, and the next round logs in
    with it after one wait of 2 s; every wait stays within MASTER_RETRY_DELAYS."""
    new = _password()
    world.pg.psql(f"ALTER ROLE {world.master_user} PASSWORD '{new}'")
    value = world.value(world.master_arn)

    def the_master_rotation_finishes(_: float) -> None:
        world.sm.put_secret_value(
            SecretId=world.master_arn, SecretString=json.dumps({**value, "password": new})
        )

    world.during_sleep = the_master_rotation_finishes
    token = world.start(world.txlog_arn)
    world.step(ALTERNATING_USERS, world.txlog_arn, token, "createSecret")
    started = time.monotonic()
    assert world.step(ALTERNATING_USERS, world.txlog_arn, token, "setSecret") == (
        f"created {world.txlog_user}_clone"
    )
    # Bounded: one recorded wait, and the step itself (waits not slept) is quick.
    assert world.sleeps == [2.0]
    assert sum(MASTER_RETRY_DELAYS) <= 20
    assert time.monotonic() - started < 10
    for step in ("testSecret", "finishSecret"):
        world.step(ALTERNATING_USERS, world.txlog_arn, token, step)
    assert world.logs_in(world.txlog_arn) and world.logs_in(world.master_arn)
