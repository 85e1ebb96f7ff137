"""The drills' DSNs (govdr.drills.commands.DrillLogin) handed to the real libpq.

The test server listens on a Unix socket, where libpq does not use TLS (sslmode does not
apply), so what is proven here is the rest of the DSN: libpq parses every keyword, the master
secret's login works with ``require_auth=scram-sha-256``, and ``require_auth`` is enforced: an
IAM token sent where the server asks for SCRAM is refused by the client itself.
"""

from __future__ import annotations

import argparse
import json
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from govdr.drills import commands
from govdr.drills.probe import attempt
from tests.support.pgcluster import Postgres


class Session:
    def __init__(self, clients: dict[str, Any]) -> None:
        self.clients = clients

    def client(self, service: str) -> Any:
        return self.clients[service]


def _client(service: str) -> Any:
    return boto3.client(
        service,
        region_name="eu-central-2",
        aws_access_key_id="stub",
        aws_secret_access_key="stub",
    )


@pytest.fixture
def master(postgres: Postgres) -> Iterator[tuple[str, str]]:
    user = f"govdr_admin_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(24)
    postgres.psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    yield user, password
    postgres.psql(f"DROP ROLE IF EXISTS {user}")


def _login(postgres: Postgres, auth: str, master: tuple[str, str]) -> commands.DrillLogin:
    user, password = master
    secretsmanager = _client("secretsmanager")
    stub = Stubber(secretsmanager)
    stub.add_response(
        "get_secret_value",
        {
            "SecretString": json.dumps(
                {"username": user, "password": password, "dbname": "postgres"}
            )
        },
        {"SecretId": "arn:secret"},
    )
    stub.activate()
    session = Session({"rds": _client("rds"), "secretsmanager": secretsmanager})
    return commands.DrillLogin(
        session,  # type: ignore[arg-type]
        {"DatabaseSecretArn": "arn:secret"},
        argparse.Namespace(sslrootcert=None),
        str(postgres.socket_dir),
        postgres.port,
        auth,
    )


def test_the_secret_login_dsn_connects_through_libpq(
    postgres: Postgres, master: tuple[str, str]
) -> None:
    ok, error = attempt(_login(postgres, commands.AUTH_SECRET, master).probe())
    assert (ok, error) == (True, "")


def test_the_iam_login_is_refused_by_libpq_when_the_server_asks_for_scram(
    postgres: Postgres, master: tuple[str, str]
) -> None:
    """The twin: the IAM DSN requires a cleartext-password request (what RDS sends for an
    rds_iam login); this server asks for SCRAM, and libpq refuses before sending the token."""
    postgres.psql("CREATE ROLE govdr_drill LOGIN")
    try:
        login = _login(postgres, commands.AUTH_IAM, master)
        rds = login._rds
        real = rds.generate_db_auth_token

        def generate(**kwargs: Any) -> str:
            # A socket directory is not a host name a token can be signed for.
            token: str = real(**{**kwargs, "DBHostname": "rds-qa.example.internal"})
            return token

        rds.generate_db_auth_token = generate
        ok, error = attempt(login.probe())
    finally:
        postgres.psql("DROP ROLE govdr_drill")
    assert not ok
    assert error.endswith(
        'authentication method requirement "password" failed: server requested SASL authentication'
    ), error
    assert "X-Amz-" not in error
