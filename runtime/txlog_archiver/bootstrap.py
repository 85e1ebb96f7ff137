"""Custom resource that prepares the database for the archiver (``Custom::TxlogBootstrap``).

Create / Update (idempotent), connected as the master user over TLS:

- the replication user of the archiver's secret exists, with that secret's password, sent as
  a SCRAM-SHA-256 verifier so the password never appears in a statement or an audit log;
- it may use logical replication: ``GRANT rds_replication`` on RDS, the ``REPLICATION``
  attribute on plain PostgreSQL;
- ``pgaudit`` is created where available (object auditing needs the extension once).

Delete: the archive's replication slot is dropped (an abandoned slot keeps WAL until the
storage fills), then the replication user and its rotation clone. A database that can no
longer be reached does not block the teardown: the response says what was left.

It must run before the secret's first rotation, which expects the user to exist.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from runtime.cfn_response import CfnRequest, send_response
from runtime.txlog_archiver.handler import dsn_from_secret

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

CLONE_SUFFIX = "_clone"  # the alternate user of Secrets Manager's multi-user rotation
TERMINATE_TIMEOUT_MS = 10_000  # how long a delete waits for a streaming archiver to exit


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


def remove(connection: Any, username: str, slot: str) -> dict[str, Any]:
    """Drop the slot (ending its walsender first) and the replication users."""
    from psycopg2 import sql

    connection.autocommit = True
    with connection.cursor() as cursor:
        # With a timeout, pg_terminate_backend waits until the walsender has exited (and so
        # released the slot) instead of returning once the signal is sent.
        cursor.execute(
            "SELECT pg_terminate_backend(active_pid, %s) FROM pg_replication_slots "
            "WHERE slot_name = %s AND active_pid IS NOT NULL",
            (TERMINATE_TIMEOUT_MS, slot),
        )
        cursor.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        )
        dropped_slot = cursor.rowcount == 1
        for user in (username, username.removesuffix(CLONE_SUFFIX) + CLONE_SUFFIX):
            cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
    return {"slot_dropped": dropped_slot}


def handle(
    event: dict[str, Any],
    read_secret: Callable[[str], Mapping[str, Any]],
    connect: Callable[[str], Any],
) -> None:
    request = CfnRequest.parse(event, "txlog-bootstrap")
    props = request.properties
    required = ("MasterSecretArn", "ReplicationSecretArn", "SlotName")
    missing = [k for k in required if not props.get(k)]
    if missing:
        send_response(request, "FAILED", f"ResourceProperties missing: {', '.join(missing)}", {})
        return
    data: dict[str, Any] = {}
    try:
        master = read_secret(props["MasterSecretArn"])
        if props.get("DatabaseName"):  # the archived database: pgaudit is created there
            master = {**master, "dbname": props["DatabaseName"]}
        replication = read_secret(props["ReplicationSecretArn"])
        # The rotation may have made the clone current; the base name is the user to manage.
        username = str(replication["username"]).removesuffix(CLONE_SUFFIX)
        physical_id = f"txlog-bootstrap:{username}"
        if request.request_type == "Delete":
            try:
                connection = connect(dsn_from_secret(master, "require"))
            except Exception as exc:  # the database may already be gone
                LOG.warning("database unreachable on delete, nothing dropped: %s", exc)
                send_response(request, "SUCCESS", f"database unreachable: {exc}", {})
                return
            try:
                data = remove(connection, username, str(props["SlotName"]))
            finally:
                connection.close()
        else:
            connection = connect(dsn_from_secret(master, "require"))
            try:
                data = prepare(connection, username, str(replication["password"]))
            finally:
                connection.close()
        LOG.info(json.dumps({"request": request.request_type, **data}))
        send_response(request, "SUCCESS", "ok", data, physical_id)
    except Exception as exc:
        LOG.exception("txlog bootstrap %s failed", request.request_type)
        send_response(request, "FAILED", f"{type(exc).__name__}: {exc}", data)


def handler(event: dict[str, Any], context: Any) -> None:  # pragma: no cover - Lambda entry
    import boto3
    import psycopg2

    client = boto3.client("secretsmanager", region_name=os.environ.get("AWS_REGION"))

    def read_secret(arn: str) -> Mapping[str, Any]:
        value: Mapping[str, Any] = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
        return value

    handle(event, read_secret, psycopg2.connect)
