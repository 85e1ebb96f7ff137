"""Custom resource that prepares the database for the archiver (``Custom::TxlogBootstrap``).

Create / Update (idempotent), connected as the master user over verified TLS
(``govdr/lambda_support/pg_tls.py``: verify-full against the pinned RDS roots, SCRAM required):

- the replication user of the archiver's secret exists, with that secret's password, sent as
  a SCRAM-SHA-256 verifier so the password never appears in a statement or an audit log;
- it may use logical replication: ``GRANT rds_replication`` on RDS, the ``REPLICATION``
  attribute on plain PostgreSQL;
- ``pgaudit`` is created where available (object auditing needs the extension once);
- the drills' login ``govdr_drill`` exists (see ``prepare_drill_role``): no password, logs in
  with an IAM database authentication token (``GRANT rds_iam`` where that role exists, i.e. on
  RDS), may connect to the archived database and nothing more, read-only by default.

Delete, while the stack is being deleted: the archive's replication slot is dropped (an
abandoned slot keeps WAL until the storage fills), then the replication user, its rotation
clone and the drills' login. A Delete in any other stack status (the old resource after a
replacement, a new one on a rollback) drops nothing: the resource's successor still needs them.
A database that can no longer be reached does not block the teardown: the result says what
was left (``database_unreachable``). A missing CA file (``pg_tls.TlsSetupError``)
fails every request, Delete included, with its one-line reason: it is a broken bundle or
setting, not a database that is gone.

The function answers CDK's custom-resource framework (govdr/lambda_support/custom_resource.py),
which answers CloudFormation: a result is SUCCESS, a RequestFailed its reason.

Every request is checked against the function's own environment first: ``SlotName`` must be
the slot the stack configured (``TXLOG_SLOT_NAME``) and both secret ARNs the ones it
configured (``MASTER_SECRET_ARN``, ``REPLICATION_SECRET_ARN``); anything else fails with the
reason and touches nothing. An ``Update`` that changes ``SlotName`` creates the new slot, then
drops the old one (``OldResourceProperties``), which would otherwise keep WAL forever; changes
between the old slot's confirmed position and the new slot are not in the archive.

It must run before the secrets' first rotations: the archiver's rotation clones the user, and
the master's rotation changes the password the bootstrap logs in with. The stack orders them
(the rotation schedules depend on this resource); should the master password still change
between reading the secret and logging in, an authentication failure re-reads the secret's
AWSCURRENT a few times with backoff, well inside the function's two minutes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from govdr.lambda_support.custom_resource import (
    DELETING_STACK_STATUS,
    MAX_REASON_CHARS,
    CfnRequest,
    RequestFailed,
    stack_status,
    success,
)
from govdr.lambda_support.pg_tls import TlsSetupError, tls_from_env
from govdr.txlog import contract
from govdr.txlog.runtime.handler import dsn_from_secret

LOG = Logger(service=contract.BOOTSTRAP_SERVICE)

# A stack being deleted, or a first create rolling back (nothing came before this resource):
# the only statuses in which a Delete drops the slot and the users.
DROPPING_STACK_STATUSES = (DELETING_STACK_STATUS, "ROLLBACK_IN_PROGRESS")
CLONE_SUFFIX = "_clone"  # the alternate user of Secrets Manager's multi-user rotation
TERMINATE_TIMEOUT_MS = 10_000  # how long a delete waits for a streaming archiver to exit
# Seconds between logins after an authentication failure: four attempts within 14 s.
AUTH_RETRY_DELAYS = (2.0, 4.0, 8.0)


# The product's slot names (govdr.naming.slot_name); an old slot outside it is never dropped.
SLOT_PATTERN = re.compile(r"govdr_txlog_[a-z0-9_]{1,50}")


@dataclass(frozen=True)
class OwnEnvironment:
    """What the stack configured for this function (its environment variables)."""

    slot: str
    master_secret_arn: str
    replication_secret_arn: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OwnEnvironment:
        """The function's settings; an unset one stays empty and :meth:`unset` names it (the
        request is then answered FAILED, not left to CloudFormation's timeout)."""
        slot, master, replication = (environ.get(name, "") for name in contract.BOOTSTRAP_ENV)
        return cls(slot, master, replication)

    def unset(self) -> list[str]:
        values = (self.slot, self.master_secret_arn, self.replication_secret_arn)
        return [
            name for name, value in zip(contract.BOOTSTRAP_ENV, values, strict=True) if not value
        ]

    def mismatches(self, props: Mapping[str, Any]) -> list[str]:
        expected = {
            "SlotName": self.slot,
            "MasterSecretArn": self.master_secret_arn,
            "ReplicationSecretArn": self.replication_secret_arn,
        }
        return [
            f"{key} {props.get(key)!r} is not this environment's {value!r}"
            for key, value in expected.items()
            if props.get(key) != value
        ]


class ForeignEvent(ValueError):
    """The event names a slot or secret that is not the function's own."""


class MasterLoginRejected(RuntimeError):
    """The master secret's AWSCURRENT credentials were refused on every attempt."""


def _is_auth_failure(exc: Exception) -> bool:
    # psycopg2 reports a refused login as OperationalError; the server's SQLSTATE 28P01
    # (invalid_password) is in the message, not in pgcode, for connection errors.
    return getattr(exc, "pgcode", None) == "28P01" or "password authentication failed" in str(exc)


def connect_as_master(
    read_secret: Callable[[str], Mapping[str, Any]],
    connect: Callable[[str], Any],
    master_arn: str,
    dbname: str | None,
    sleep: Callable[[float], None] = time.sleep,
    *,
    tls: Mapping[str, str],
) -> Any:
    """A connection with the master secret's AWSCURRENT credentials, read again after each
    refused login (a rotation may have changed the password since the last read)."""
    attempts = len(AUTH_RETRY_DELAYS) + 1
    for attempt in range(attempts):
        master = read_secret(master_arn)
        if dbname:  # the archived database: pgaudit is created there
            master = {**master, "dbname": dbname}
        try:
            return connect(dsn_from_secret(master, tls))
        except Exception as exc:
            if not _is_auth_failure(exc):
                raise
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if attempt == attempts - 1:
                raise MasterLoginRejected(
                    f"the database refused the master secret's AWSCURRENT credentials "
                    f"{attempts} times within {sum(AUTH_RETRY_DELAYS):.0f} s ({first_line}). "
                    "Put the database's master password into the secret (or reset it with "
                    "modify-db-instance --master-user-password), then retry the stack operation"
                ) from None
            LOG.warning(
                "master login refused (attempt %d of %d: %s); reading the secret again in %.0f s",
                attempt + 1,
                attempts,
                first_line,
                AUTH_RETRY_DELAYS[attempt],
            )
            sleep(AUTH_RETRY_DELAYS[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


def prepare(connection: Any, username: str, password: str) -> dict[str, Any]:
    """Create the replication user if missing and let it replicate; report what was done."""
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    connection.autocommit = True
    done: dict[str, Any] = {"user": username, "created": False}
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,))
        if cursor.fetchone() is None:
            verifier = encrypt_password(password, username, connection, "scram-sha-256")
            cursor.execute(
                sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(username), sql.Literal(verifier)
                )
            )
            done["created"] = True
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication'")
        if cursor.fetchone() is not None:
            cursor.execute(sql.SQL("GRANT rds_replication TO {}").format(sql.Identifier(username)))
            done["replication"] = "rds_replication"
        else:
            cursor.execute(
                sql.SQL("ALTER ROLE {} WITH REPLICATION").format(sql.Identifier(username))
            )
            done["replication"] = "REPLICATION"
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgaudit'")
        if cursor.fetchone() is not None:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pgaudit")
            done["pgaudit"] = True
    return done


DRILL_ROLE = contract.DRILL_ROLE
# The drills open one connection at a time (a new one per probe); a few spare for overlaps.
DRILL_CONNECTION_LIMIT = 5
# Role settings applied at every login: the drills' probes (SELECT 1, a catalog count) never
# write, and a probe that hangs must not hold a backend.
DRILL_SETTINGS = {"default_transaction_read_only": "on", "statement_timeout": "10s"}


def prepare_drill_role(connection: Any) -> dict[str, Any]:
    """Create or converge the drills' login in the connected database; report what was done.

    Least privilege for probes that run ``SELECT 1`` and ``SELECT count(*) FROM
    pg_catalog.pg_class`` (govdr/drills): LOGIN without a password and without any other
    attribute, ``CONNECT`` on this database, and nothing on any table (the catalogs are
    readable by every role). ``rds_iam`` makes RDS accept only an IAM token for it
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.DBAccounts.html);
    where that role does not exist (plain PostgreSQL) the login cannot authenticate at all.
    Every attribute is set again on each Create/Update, so a role changed by hand converges.
    """
    from psycopg2 import sql

    connection.autocommit = True
    role = sql.Identifier(DRILL_ROLE)
    done: dict[str, Any] = {"drill_user": DRILL_ROLE, "drill_user_created": False}
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DRILL_ROLE,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE ROLE {} WITH LOGIN").format(role))
            done["drill_user_created"] = True
        cursor.execute(
            sql.SQL(
                "ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS INHERIT CONNECTION LIMIT {} PASSWORD NULL"
            ).format(role, sql.Literal(DRILL_CONNECTION_LIMIT))
        )
        for setting, value in DRILL_SETTINGS.items():
            cursor.execute(
                sql.SQL("ALTER ROLE {} SET {} = {}").format(
                    role, sql.Identifier(setting), sql.Literal(value)
                )
            )
        cursor.execute("SELECT current_database()")
        (database,) = cursor.fetchone()
        cursor.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role)
        )
        done["drill_database"] = database
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'")
        done["drill_iam"] = cursor.fetchone() is not None
        if done["drill_iam"]:
            cursor.execute(sql.SQL("GRANT rds_iam TO {}").format(role))
    return done


def drop_drill_role(cursor: Any) -> bool:
    """Drop the drills' login (its one privilege first); return whether it existed."""
    from psycopg2 import sql

    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DRILL_ROLE,))
    if cursor.fetchone() is None:
        return False
    cursor.execute("SELECT current_database()")
    (database,) = cursor.fetchone()
    role = sql.Identifier(DRILL_ROLE)
    cursor.execute(
        sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(database), role)
    )
    cursor.execute(sql.SQL("DROP ROLE {}").format(role))
    return True


def drop_slot(cursor: Any, slot: str) -> bool:
    """End the slot's walsender and drop the slot; return whether it existed."""
    # With a timeout, pg_terminate_backend waits until the walsender has exited (and so
    # released the slot) instead of returning once the signal is sent.
    cursor.execute(
        "SELECT pg_terminate_backend(active_pid, %s) FROM pg_replication_slots "
        "WHERE slot_name = %s AND active_pid IS NOT NULL",
        (TERMINATE_TIMEOUT_MS, slot),
    )
    cursor.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )
    return bool(cursor.rowcount == 1)


def rename_slot(connection: Any, old: str, new: str) -> dict[str, Any]:
    """Create the new slot (unless it exists), then drop the old one."""
    from govdr.txlog.runtime.archiver import ensure_slot

    connection.autocommit = True
    with connection.cursor() as cursor:
        created = ensure_slot(cursor, new)
        dropped = drop_slot(cursor, old)
    return {"slot_created": created, "old_slot": old, "old_slot_dropped": dropped}


def remove(connection: Any, username: str, slot: str) -> dict[str, Any]:
    """Drop the slot (ending its walsender first) and the replication users."""
    from psycopg2 import sql

    connection.autocommit = True
    with connection.cursor() as cursor:
        dropped_slot = drop_slot(cursor, slot)
        for user in (username, username.removesuffix(CLONE_SUFFIX) + CLONE_SUFFIX):
            cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
        dropped_drill = drop_drill_role(cursor)
    return {"slot_dropped": dropped_slot, "drill_user_dropped": dropped_drill}


def _refusal(request: CfnRequest, own: OwnEnvironment) -> str | None:
    """Why the request may change nothing, if it may not: properties missing, the function's
    own environment unset, or a slot or secret other than its own named."""
    props = request.properties
    missing = [
        k for k in ("MasterSecretArn", "ReplicationSecretArn", "SlotName") if not props.get(k)
    ]
    if missing:
        return f"ResourceProperties missing: {', '.join(missing)}; nothing was changed"
    unset = own.unset()
    if unset:
        return (
            f"the function's environment lacks {', '.join(unset)}, so it cannot tell its own "
            "slot and secrets; nothing was changed. Redeploy the stack "
            "(govdr/stacks/database.py sets them)"
        )
    foreign = own.mismatches(props)
    if foreign:
        return (
            f"{'; '.join(foreign)}. Nothing was changed: this function manages only the slot "
            "and secrets its stack configured"
        )
    old_slot = str(request.old_properties.get("SlotName") or "")
    if _renamed(request, own) and not SLOT_PATTERN.fullmatch(old_slot):
        return (
            f"OldResourceProperties.SlotName {old_slot!r} is not a slot name of this product "
            f"(govdr_txlog_<suffix>); nothing was changed"
        )
    return None


def _renamed(request: CfnRequest, own: OwnEnvironment) -> bool:
    old_slot = str(request.old_properties.get("SlotName") or "")
    return bool(request.request_type == "Update" and old_slot and old_slot != own.slot)


def handle(
    event: dict[str, Any],
    read_secret: Callable[[str], Mapping[str, Any]],
    connect: Callable[[str], Any],
    sleep: Callable[[float], None] = time.sleep,
    *,
    own: OwnEnvironment,
    stack_status: Callable[[str], str],
    tls: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Carry out one CloudFormation request; its result for the custom-resource framework
    (govdr.lambda_support.custom_resource.success), or RequestFailed with the reason.
    ``stack_status`` reads the status of the stack that sent a Delete; ``tls`` defaults to
    ``tls_from_env(os.environ)``."""
    request = CfnRequest.parse(event)
    refusal = _refusal(request, own)
    if refusal is not None:
        LOG.error("txlog bootstrap %s refused: %s", request.request_type, refusal)
        raise RequestFailed(refusal)
    props = request.properties
    try:
        keywords = tls if tls is not None else tls_from_env(os.environ)
    except TlsSetupError as exc:  # one line, before any secret is read or connection opened
        LOG.error("txlog bootstrap %s failed: %s", request.request_type, exc)
        raise RequestFailed(str(exc)) from None
    try:
        if request.request_type == "Delete":
            # Before anything is read: a Delete that must drop nothing needs no secret.
            status_now = stack_status(request.stack_id)
            if status_now not in DROPPING_STACK_STATUSES:
                # A replacement or an update's rollback: the resource's successor (or
                # predecessor) still needs the slot and the users.
                LOG.info(json.dumps({"request": "Delete", "skipped": status_now}))
                return success(
                    {
                        "Skipped": f"stack is {status_now}; the slot and the users are dropped "
                        f"only while the stack is {' or '.join(DROPPING_STACK_STATUSES)}"
                    }
                )
        replication = read_secret(props["ReplicationSecretArn"])
        # The rotation may have made the clone current; the base name is the user to manage.
        username = str(replication["username"]).removesuffix(CLONE_SUFFIX)

        def as_master() -> Any:
            return connect_as_master(
                read_secret,
                connect,
                props["MasterSecretArn"],
                props.get("DatabaseName"),
                sleep,
                tls=keywords,
            )

        if request.request_type == "Delete":
            try:
                connection = as_master()
            except Exception as exc:  # the database may already be gone
                LOG.warning("database unreachable on delete, nothing dropped: %s", exc)
                return success({"database_unreachable": str(exc)[:MAX_REASON_CHARS]})
            try:
                data = remove(connection, username, str(props["SlotName"]))
            finally:
                connection.close()
            LOG.info(json.dumps({"request": request.request_type, **data}))
            return success(data)  # a Delete keeps its physical ID
        connection = as_master()
        try:
            data = prepare(connection, username, str(replication["password"]))
            data.update(prepare_drill_role(connection))
            if _renamed(request, own):
                old_slot = str(request.old_properties["SlotName"])
                data.update(rename_slot(connection, old_slot, own.slot))
        finally:
            connection.close()
        LOG.info(json.dumps({"request": request.request_type, **data}))
        return success(data, f"txlog-bootstrap:{username}")
    except MasterLoginRejected as exc:  # a clear reason, no stack trace
        LOG.error("txlog bootstrap %s failed: %s", request.request_type, exc)
        raise RequestFailed(str(exc)) from None
    except RequestFailed:
        raise
    except Exception as exc:
        LOG.exception("txlog bootstrap %s failed", request.request_type)
        raise RequestFailed(f"{type(exc).__name__}: {exc}") from None


@LOG.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    import boto3
    import psycopg2

    region = os.environ.get("AWS_REGION")
    client = boto3.client("secretsmanager", region_name=region)
    cloudformation = boto3.client("cloudformation", region_name=region)

    def read_secret(arn: str) -> Mapping[str, Any]:
        # AWSCURRENT at the moment of each read (re-read after a refused login).
        response = client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
        value: Mapping[str, Any] = json.loads(response["SecretString"])
        return value

    return handle(
        event,
        read_secret,
        psycopg2.connect,
        own=OwnEnvironment.from_environ(os.environ),
        stack_status=lambda stack_id: stack_status(cloudformation, stack_id),
    )
