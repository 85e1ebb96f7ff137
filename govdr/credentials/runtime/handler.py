"""Secrets Manager rotation function for govdr's PostgreSQL logins.

Secrets Manager invokes it once per step of a rotation, with the secret, the token of the new
version (staged AWSPENDING before the first step) and the step
(https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda-functions.html):

- ``createSecret``: put the new version under the token: the current fields with a password
  from GetRandomPassword (and, with alternating users, the other user's name);
- ``setSecret``: make the database accept the pending credentials;
- ``testSecret``: log in with them (and, with alternating users, check the user's rights);
- ``finishSecret``: move AWSCURRENT to the token's version.

Every step may run again with the same token and then changes nothing: the pending version is
created once, a pending password that already logs in is not set again, and a version that is
already AWSCURRENT is left so.

Two strategies (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotation-strategy.html),
chosen by ``ROTATION_STRATEGY``:

- ``single-user`` (the master secret): the user changes its own password, logged in with the
  AWSCURRENT credentials (AWSPREVIOUS if those no longer log in);
- ``alternating-users`` (the archiver's login): the master secret named in ``masterarn``
  creates ``<user>_clone`` on the first rotation, with the original user's REPLICATION
  attribute, its role memberships (``rds_replication`` on RDS) and membership in the original
  user itself; every later rotation sets the password of the user that is not current, so the
  login in use keeps working while the other one changes. Both first rotations start
  together, so the master's password may already have changed while its AWSCURRENT still
  holds the old one: a refused master login is retried with the master's AWSPENDING and a
  fresh AWSCURRENT (``MASTER_RETRY_DELAYS``).

Every connection uses verified TLS (``govdr/lambda_support/pg_tls.py``: verify-full against the
pinned RDS roots, SCRAM required, so an impostor's cleartext password request is refused before the
password is sent). Passwords reach the server only as SCRAM-SHA-256 verifiers computed here,
never as clear text in a statement (pgaudit logs role statements); identifiers are quoted with
``psycopg2.sql`` and user names must be plain identifiers. Nothing logged or raised carries a
password.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from govdr.credentials import contract
from govdr.lambda_support.pg_tls import TlsSetupError, tls_from_env, verified_tls

LOG = Logger(service=contract.SERVICE)
# The SDK's debug log prints response bodies, which here are secret values.
logging.getLogger("botocore").setLevel(logging.WARNING)

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
SINGLE_USER = contract.SINGLE_USER
ALTERNATING_USERS = contract.ALTERNATING_USERS
STRATEGIES = (SINGLE_USER, ALTERNATING_USERS)
CLONE_SUFFIX = "_clone"  # the name AWS's alternating-users rotation gives the second user
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
# PostgreSQL truncates identifiers at 63 bytes; the clone's name adds six characters.
USERNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,56}")
# RotateSecret's ClientRequestToken: 32 to 64 characters (Secrets Manager sends a UUID).
TOKEN = re.compile(r"[\x21-\x7e]{32,64}")
DEFAULT_PASSWORD_LENGTH = 32
CONNECT_TIMEOUT_SECONDS = 10
APPLICATION_NAME = "govdr-secret-rotation"
# Seconds between rounds of master logins (AWSCURRENT, then AWSPENDING) when the database
# refuses the master secret's passwords: four rounds within 14 s, inside the 60 s timeout.
MASTER_RETRY_DELAYS = (2.0, 4.0, 8.0)


class RotationError(RuntimeError):
    """A step cannot go on; the message says what was wrong and how to fix it."""


class MissingVersion(RotationError):
    """The requested version has no value (yet)."""


@dataclass(frozen=True)
class Login:
    """The connection fields of one secret version (the password is never printed)."""

    username: str
    password: str = field(repr=False)
    host: str
    port: int
    dbname: str | None
    masterarn: str | None
    fields: dict[str, Any] = field(repr=False)

    def dsn(self, tls: Mapping[str, str], dbname: str | None = None) -> str:
        """A libpq DSN with the TLS keywords ``tls`` (govdr.lambda_support.pg_tls.verified_tls)."""
        import psycopg2.extensions

        dsn: str = psycopg2.extensions.make_dsn(
            host=self.host,
            port=self.port,
            user=self.username,
            password=self.password,
            dbname=dbname or self.dbname or "postgres",
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=APPLICATION_NAME,
            **tls,
        )
        return dsn


def parse_event(event: Any) -> tuple[str, str, str]:
    """(SecretId, ClientRequestToken, Step) of a rotation event, or a RotationError."""
    if not isinstance(event, Mapping):
        raise RotationError(
            "invalid rotation event: expected an object with SecretId, ClientRequestToken and "
            f"Step, got {type(event).__name__}; invoke the function only through rotate-secret"
        )
    problems = []
    secret_id = event.get("SecretId")
    if not isinstance(secret_id, str) or not 0 < len(secret_id) <= 2048:
        problems.append("SecretId (the secret's ARN) is missing")
    token = event.get("ClientRequestToken")
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        problems.append("ClientRequestToken must be 32 to 64 printable characters")
    step = event.get("Step")
    if step not in STEPS:
        problems.append(f"Step {str(step)[:40]!r} is not one of {', '.join(STEPS)}")
    if problems:
        raise RotationError(
            "invalid rotation event: "
            + "; ".join(problems)
            + ". Secrets Manager sends these three fields; invoke the function only through "
            "rotate-secret"
        )
    return str(secret_id), str(token), str(step)


def parse_login(text: Any, what: str, *, needs_master: bool = False) -> Login:
    """A secret version's JSON as a Login; a clear error (without the value) otherwise."""
    shape = (
        "a JSON object with username, password, host, port (and dbname, engine"
        + (", masterarn" if needs_master else "")
        + ")"
    )
    if not isinstance(text, str):
        raise RotationError(f"{what} has no SecretString; it must hold {shape}")
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:  # the message names a position, never the text
        raise RotationError(
            f"{what} is not JSON ({exc.msg} at character {exc.pos}); it must hold {shape}"
        ) from None
    if not isinstance(fields, dict):
        raise RotationError(f"{what} holds a JSON {type(fields).__name__}; it must hold {shape}")
    required = ["username", "password", "host", *(["masterarn"] if needs_master else [])]
    missing = [k for k in required if not isinstance(fields.get(k), str) or not fields[k]]
    if missing:
        raise RotationError(f"{what} lacks {', '.join(missing)}; it must hold {shape}")
    username = fields["username"]
    if not USERNAME.fullmatch(username):
        raise RotationError(
            f"{what} names the user {username[:80]!r}, which is not a plain PostgreSQL "
            "identifier: use letters, digits, _ and $, starting with a letter or _, at most "
            "57 characters (the alternate user adds _clone)"
        )
    port = fields.get("port", 5432)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RotationError(f"{what} has port {str(port)[:20]!r}; it must be 1 to 65535")
    engine = fields.get("engine", "postgres")
    if not str(engine).startswith("postgres"):
        raise RotationError(f"{what} is for engine {str(engine)[:40]!r}; this rotates PostgreSQL")
    dbname = fields.get("dbname")
    return Login(
        username=username,
        password=fields["password"],
        host=fields["host"],
        port=port,
        dbname=dbname if isinstance(dbname, str) and dbname else None,
        masterarn=fields.get("masterarn") or None,
        fields=fields,
    )


def alternate_username(username: str) -> str:
    """``user`` <-> ``user_clone``."""
    if username.endswith(CLONE_SUFFIX):
        return username.removesuffix(CLONE_SUFFIX)
    return username + CLONE_SUFFIX


def _is_auth_failure(exc: Exception) -> bool:
    # A role that does not exist fails the same way (PostgreSQL does not tell them apart).
    return getattr(exc, "pgcode", None) == "28P01" or "password authentication failed" in str(exc)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def set_password(connection: Any, username: str, password: str) -> None:
    """ALTER ROLE ... PASSWORD with a SCRAM verifier (the clear password is never sent)."""
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    verifier = encrypt_password(password, username, connection, "scram-sha-256")
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(username), sql.Literal(verifier)
            )
        )


def missing_rights(cursor: Any, original: str, user: str) -> list[str]:
    """What ``user`` lacks of ``original``'s REPLICATION, memberships and the role itself."""
    cursor.execute(
        "SELECT o.rolreplication AND NOT u.rolreplication FROM pg_roles o, pg_roles u "
        "WHERE o.rolname = %s AND u.rolname = %s",
        (original, user),
    )
    row = cursor.fetchone()
    if row is None:
        return [f"role {original} or {user} does not exist"]
    lacking = ["REPLICATION"] if row[0] else []
    cursor.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "JOIN pg_roles o ON o.oid = m.member WHERE o.rolname = %s "
        "AND NOT pg_has_role(%s, m.roleid, 'MEMBER') ORDER BY r.rolname",
        (original, user),
    )
    lacking += [f"membership in {name}" for (name,) in cursor.fetchall()]
    if original != user:
        cursor.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (user, original))
        if not cursor.fetchone()[0]:
            lacking.append(f"membership in {original}")
    return lacking


def set_alternate_user(connection: Any, original: str, user: str, password: str) -> bool:
    """As the master user: create or update ``user`` with the password; give the clone the
    original's rights. True when the user was created."""
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    verifier = sql.Literal(encrypt_password(password, user, connection, "scram-sha-256"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (original,))
        if cursor.fetchone() is None:
            raise RotationError(
                f"the user {original} does not exist in the database: the rotation clones it "
                "and never creates it (Custom::TxlogBootstrap does); update the stack"
            )
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
        created = cursor.fetchone() is None
        verb = "CREATE" if created else "ALTER"
        cursor.execute(
            sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(user), verifier)
        )
        if user != original:
            for right in missing_rights(cursor, original, user):
                if right == "REPLICATION":
                    statement = sql.SQL("ALTER ROLE {} WITH REPLICATION").format(
                        sql.Identifier(user)
                    )
                else:
                    role = right.removeprefix("membership in ")
                    statement = sql.SQL("GRANT {} TO {}").format(
                        sql.Identifier(role), sql.Identifier(user)
                    )
                cursor.execute(statement)
    connection.commit()
    return created


@dataclass
class Rotator:
    """The four steps against one Secrets Manager client and one way to connect."""

    client: Any
    connect: Callable[[str], Any]
    strategy: str
    # libpq keywords of the TLS session: verify-full with the pinned RDS roots by default.
    tls: Mapping[str, str] = field(default_factory=verified_tls)
    exclude_characters: str = ""
    password_length: int = DEFAULT_PASSWORD_LENGTH
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise RotationError(
                f"ROTATION_STRATEGY {self.strategy[:40]!r} is not one of {', '.join(STRATEGIES)}"
            )

    # --- Secrets Manager ----------------------------------------------------------------

    def login(
        self, secret_id: str, stage: str, token: str | None = None, *, master: bool = False
    ) -> Login:
        """The version of ``secret_id`` with ``stage`` (and ``token``), parsed; ``master`` for
        the master secret, which names no master of its own."""
        from botocore.exceptions import ClientError

        request: dict[str, str] = {"SecretId": secret_id, "VersionStage": stage}
        if token:
            request["VersionId"] = token
        try:
            value = self.client.get_secret_value(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                version = f" for version {token} (createSecret has not run for it)" if token else ""
                raise MissingVersion(f"{secret_id} has no {stage} value{version}") from None
            raise
        return parse_login(
            value.get("SecretString"),
            f"the {stage} version of {secret_id}",
            needs_master=self.strategy == ALTERNATING_USERS and not master,
        )

    def pending_username(self, current: Login) -> str:
        if self.strategy == SINGLE_USER:
            return current.username
        return alternate_username(current.username)

    # --- the database --------------------------------------------------------------------

    def open(self, login: Login, dbname: str | None = None) -> Any | None:
        """A connection as ``login``; None when its password is not (or no longer) valid."""
        import psycopg2

        try:
            return self.connect(login.dsn(self.tls, dbname))
        except psycopg2.OperationalError as exc:
            if _is_auth_failure(exc):
                return None
            raise RotationError(
                f"cannot reach the database {login.host}:{login.port} as {login.username}: "
                f"{_first_line(exc)}; check rotation-sg's egress to the database and the "
                "database's ingress on its port"
            ) from None

    # --- the steps -------------------------------------------------------------------------

    def rotate(self, event: Any) -> str:
        """Run the event's step; return what it did."""
        secret_id, token, step = parse_event(event)
        metadata = self.client.describe_secret(SecretId=secret_id)
        if metadata.get("RotationEnabled") is False:
            raise RotationError(f"{secret_id} is not enabled for rotation")
        versions = metadata.get("VersionIdsToStages", {})
        if token not in versions:
            raise RotationError(
                f"version {token} of {secret_id} has no stage: a rotation starts with "
                "rotate-secret, which stages the new version AWSPENDING"
            )
        started = time.monotonic()
        if CURRENT in versions[token]:
            outcome = "already current"
        elif PENDING not in versions[token]:
            raise RotationError(
                f"version {token} of {secret_id} is not staged AWSPENDING (it is "
                f"{', '.join(versions[token]) or 'unstaged'}); start a new rotation"
            )
        else:
            steps: dict[str, Callable[[str, str], str]] = {
                "createSecret": self.create_secret,
                "setSecret": self.set_secret,
                "testSecret": self.test_secret,
                "finishSecret": self.finish_secret,
            }
            outcome = steps[step](secret_id, token)
        LOG.info(
            "rotation step",
            extra={
                "step": step,
                "secret": secret_id,
                "version": token,
                "strategy": self.strategy,
                "outcome": outcome,
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return outcome

    def create_secret(self, secret_id: str, token: str) -> str:
        current = self.login(secret_id, CURRENT)
        try:
            pending = self.login(secret_id, PENDING, token)
        except MissingVersion:
            fields = dict(current.fields)
            fields["username"] = self.pending_username(current)
            request: dict[str, Any] = {"PasswordLength": self.password_length}
            if self.exclude_characters:
                request["ExcludeCharacters"] = self.exclude_characters
            fields["password"] = self.client.get_random_password(**request)["RandomPassword"]
            self.client.put_secret_value(
                SecretId=secret_id,
                ClientRequestToken=token,
                SecretString=json.dumps(fields),
                VersionStages=[PENDING],
            )
            return f"created the pending version for {fields['username']}"
        self._check_pending(secret_id, current, pending)
        return f"the pending version for {pending.username} exists"

    def _check_pending(self, secret_id: str, current: Login, pending: Login) -> None:
        wanted = self.pending_username(current)
        if pending.username != wanted:
            raise RotationError(
                f"the AWSPENDING version of {secret_id} is for {pending.username}, but a "
                f"{self.strategy} rotation of {current.username} sets {wanted}; remove the "
                "label from that version (aws secretsmanager update-secret-version-stage "
                f"--secret-id {secret_id} --version-stage AWSPENDING --remove-from-version-id "
                "<its version id>) and rotate again"
            )
        if (pending.host, pending.port) != (current.host, current.port):
            raise RotationError(
                f"the AWSPENDING version of {secret_id} points to {pending.host}:{pending.port}, "
                f"the current one to {current.host}:{current.port}; a rotation never moves a "
                "secret to another database"
            )

    def set_secret(self, secret_id: str, token: str) -> str:
        current = self.login(secret_id, CURRENT)
        pending = self.login(secret_id, PENDING, token)
        self._check_pending(secret_id, current, pending)
        connection = self.open(pending)
        if connection is not None:
            connection.close()
            return f"the pending password of {pending.username} is already set"
        if self.strategy == SINGLE_USER:
            return self._set_own_password(secret_id, current, pending)
        return self._set_alternate_password(secret_id, current, pending)

    def _set_own_password(self, secret_id: str, current: Login, pending: Login) -> str:
        connection = self.open(current)
        if connection is None:
            try:
                previous = self.login(secret_id, PREVIOUS)
            except MissingVersion:
                previous = None
            if previous is not None and previous.username == current.username:
                connection = self.open(previous)
        if connection is None:
            raise RotationError(
                f"neither the AWSCURRENT nor the AWSPREVIOUS credentials of {secret_id} log in "
                f"as {current.username}: the password was changed outside Secrets Manager. Put "
                "the database's password into the secret (put-secret-value, AWSCURRENT), then "
                "rotate again"
            )
        try:
            set_password(connection, pending.username, pending.password)
            connection.commit()
        finally:
            connection.close()
        return f"set the password of {pending.username}"

    def _set_alternate_password(self, secret_id: str, current: Login, pending: Login) -> str:
        # The credentials being replaced must work: nobody gets a user changed by pointing a
        # secret at it (AWS's reference function makes the same check).
        connection = self.open(current)
        if connection is None:
            raise RotationError(
                f"the AWSCURRENT credentials of {secret_id} do not log in as "
                f"{current.username}; put the working password into the secret, then rotate"
            )
        connection.close()
        connection, stage = self._open_master(secret_id, current)
        try:
            original = current.username.removesuffix(CLONE_SUFFIX)
            created = set_alternate_user(connection, original, pending.username, pending.password)
        finally:
            connection.close()
        done = f"{'created' if created else 'set the password of'} {pending.username}"
        if stage == PENDING:
            done += " as the master user with the master secret's AWSPENDING password"
        return done

    def _master_login(self, secret_id: str, current: Login, stage: str) -> Login | None:
        """The ``stage`` version of the master secret named by ``current``; None when that
        version has no value (AWSPENDING outside a rotation of the master secret)."""
        assert current.masterarn is not None  # parse_login requires it for this strategy
        try:
            master = self.login(current.masterarn, stage, master=True)
        except MissingVersion:
            if stage == PENDING:
                return None
            raise RotationError(
                f"the master secret {current.masterarn} named by {secret_id} has no {stage} value"
            ) from None
        if (master.host, master.port) != (current.host, current.port):
            raise RotationError(
                f"the master secret {current.masterarn} is for {master.host}:{master.port}, "
                f"{secret_id} for {current.host}:{current.port}; masterarn must name the master "
                "secret of the same database"
            )
        return master

    def _open_master(self, secret_id: str, current: Login) -> tuple[Any, str]:
        """A connection as the master user, and the stage of the master secret it used.

        RotateSecret only starts a rotation
        (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html),
        and both schedules start their first rotation as CloudFormation creates them, so the
        master secret may be rotating now. Its setSecret changes the password, its
        finishSecret moves AWSCURRENT to the new version only afterwards; in between the
        password that logs in is the master's AWSPENDING
        (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda-functions.html).
        So a refused AWSCURRENT is followed by the AWSPENDING version (if it has a value and
        another password), and both are read again after MASTER_RETRY_DELAYS."""
        assert current.masterarn is not None  # parse_login requires it for this strategy
        rounds = len(MASTER_RETRY_DELAYS) + 1
        tried_pending = False
        master_user = ""
        for attempt in range(rounds):
            master = self._master_login(secret_id, current, CURRENT)
            assert master is not None  # a missing AWSCURRENT raised
            master_user = master.username
            connection = self.open(master, current.dbname)
            if connection is not None:
                return connection, CURRENT
            pending = self._master_login(secret_id, current, PENDING)
            if (
                pending is not None
                and pending.username == master.username
                and pending.password != master.password
            ):
                tried_pending = True
                connection = self.open(pending, current.dbname)
                if connection is not None:
                    return connection, PENDING
            if attempt + 1 < rounds:
                LOG.warning(
                    json.dumps(
                        {
                            "warning": "master login refused",
                            "secret": secret_id,
                            "master": current.masterarn,
                            "attempt": attempt + 1,
                            "of": rounds,
                            "retry_in_seconds": MASTER_RETRY_DELAYS[attempt],
                        }
                    )
                )
                self.sleep(MASTER_RETRY_DELAYS[attempt])
        refused = (
            "its AWSCURRENT and its AWSPENDING passwords"
            if tried_pending
            else "its AWSCURRENT password (it has no other AWSPENDING password)"
        )
        raise RotationError(
            f"the master secret {current.masterarn} named by {secret_id} does not log in as "
            f"{master_user}: the database refused {refused} {rounds} times within "
            f"{sum(MASTER_RETRY_DELAYS):.0f} s. Put the database's master password into the "
            "master secret (put-secret-value, AWSCURRENT; reset it with modify-db-instance "
            f"--master-user-password if it is unknown), then rotate {secret_id} again"
        )

    def test_secret(self, secret_id: str, token: str) -> str:
        pending = self.login(secret_id, PENDING, token)
        connection = self.open(pending)
        if connection is None:
            raise RotationError(
                f"the AWSPENDING credentials of {secret_id} do not log in as {pending.username}: "
                "setSecret did not set them (see its log entry). AWSCURRENT is unchanged; fix "
                "the cause, then rotate again"
            )
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_user")
                (user,) = cursor.fetchone()
                lacking: list[str] = []
                if self.strategy == ALTERNATING_USERS:
                    original = pending.username.removesuffix(CLONE_SUFFIX)
                    lacking = missing_rights(cursor, original, pending.username)
            connection.rollback()
        finally:
            connection.close()
        if user != pending.username:
            raise RotationError(f"logged in as {user}, expected {pending.username}")
        if lacking:
            raise RotationError(
                f"{pending.username} lacks {', '.join(lacking)} of "
                f"{pending.username.removesuffix(CLONE_SUFFIX)}; grant it, then rotate again"
            )
        return f"logged in as {pending.username}"

    def finish_secret(self, secret_id: str, token: str) -> str:
        metadata = self.client.describe_secret(SecretId=secret_id)
        current = next(
            (v for v, stages in metadata["VersionIdsToStages"].items() if CURRENT in stages), None
        )
        if current == token:
            return "already current"
        self.client.update_secret_version_stage(
            SecretId=secret_id,
            VersionStage=CURRENT,
            MoveToVersionId=token,
            RemoveFromVersionId=current,
        )
        return f"moved AWSCURRENT from {current} to {token}"


@LOG.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    import boto3
    import psycopg2

    # The regional endpoint resolves to the Secrets Manager interface endpoint of the VPC
    # (private DNS): https://docs.aws.amazon.com/secretsmanager/latest/userguide/vpc-endpoint-overview.html
    try:
        rotator = Rotator(
            client=boto3.client("secretsmanager", region_name=os.environ.get("AWS_REGION")),
            connect=psycopg2.connect,
            strategy=os.environ.get(contract.ENV_ROTATION_STRATEGY, ""),
            tls=tls_from_env(os.environ),
            exclude_characters=os.environ.get(contract.ENV_EXCLUDE_CHARACTERS, ""),
        )
        rotator.rotate(event)
    except (RotationError, TlsSetupError) as exc:
        # The step fails (Secrets Manager retries it, then reports RotationFailed); the log
        # holds the reason in one line, without a stack trace.
        LOG.error("rotation step failed: %s", exc)
        raise RotationError(str(exc)) from None
