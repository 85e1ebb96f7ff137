"""Verified TLS for every connection govdr opens to PostgreSQL.

``sslmode=require`` encrypts but accepts any certificate: whoever can redirect the endpoint
inside the VPC (a private hosted zone, the secret's ``host``) could read the password or relay
the replication stream. Every connection therefore uses ``sslmode=verify-full`` (the server's
certificate chains to a pinned Amazon RDS root CA and names the host connected to) and
``require_auth`` (libpq 16+: the client refuses an authentication method the server was not
meant to ask for, such as a cleartext password request from an impostor).

The pinned roots are ``rds-ca-eu-central-2.pem`` beside this module (the eu-central-2 roots of
https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem, described at
https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html); it is shipped
in every Lambda bundle and in the ``govdr`` package. ``require_auth`` is documented at
https://www.postgresql.org/docs/16/libpq-connect.html#LIBPQ-CONNECT-REQUIRE-AUTH.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

CA_BUNDLE = Path(__file__).resolve().parent / "rds-ca-eu-central-2.pem"
# Password logins (master, archiver) authenticate with SCRAM; RDS IAM database authentication
# sends its token as a cleartext password over the verified TLS session.
SCRAM = "scram-sha-256"
IAM_TOKEN = "password"  # noqa: S105 - the libpq method name, not a password
_AUTH_METHODS = (SCRAM, IAM_TOKEN)
# Names another CA file to verify the server with (a test server's CA, a proxy's trust store).
# The mode stays verify-full and require_auth stays: there is no setting that weakens either.
# The deployed templates never set it (tests/unit/test_db_tls_templates.py).
ROOT_CERT_ENV = "GOVDR_PG_ROOT_CERT"


class TlsSetupError(RuntimeError):
    """The CA bundle to verify the server with is missing; the message says how to fix it."""


def verified_tls(*, auth: str = SCRAM, root_cert: Path | str | None = None) -> dict[str, str]:
    """libpq keywords for a verified TLS connection: merge them into every DSN.

    ``root_cert`` overrides the pinned RDS roots (a test server's CA, a proxy's trust store).
    """
    if auth not in _AUTH_METHODS:
        raise ValueError(f"auth {auth!r} is not one of {', '.join(_AUTH_METHODS)}")
    bundle = Path(root_cert) if root_cert is not None else CA_BUNDLE
    if not bundle.is_file():
        raise TlsSetupError(
            f"CA bundle {bundle} does not exist: the server's certificate cannot be verified, "
            "so no connection is opened. Pass the file holding the CA that signed the server's "
            f"certificate (for RDS in eu-central-2: {CA_BUNDLE.name}, shipped with govdr)"
        )
    return {"sslmode": "verify-full", "sslrootcert": str(bundle), "require_auth": auth}


def tls_from_env(env: Mapping[str, str], *, auth: str = SCRAM) -> dict[str, str]:
    """``verified_tls`` with the CA file named by ``GOVDR_PG_ROOT_CERT``, if set.

    libpq's own PGSSLMODE and PGSSLROOTCERT have no effect: the keywords returned here are
    named in the DSN, and a DSN keyword wins over libpq's environment variables.
    """
    return verified_tls(auth=auth, root_cert=env.get(ROOT_CERT_ENV) or None)


def with_verified_tls(dsn: str, tls: Mapping[str, str] | None = None) -> str:
    """``dsn`` with the verified TLS keywords added, unless it names its own ``sslmode``.

    For DSNs an operator gives (``govdr txlog replay --target-dsn``, the archiver's CLI): one
    that names ``sslmode`` (a local PostgreSQL without TLS: ``sslmode=disable``) is kept as
    given; every other one is verified like the Lambda functions' connections. An invalid DSN
    raises psycopg2's ProgrammingError (its message never repeats the DSN).
    """
    import psycopg2.extensions

    if "sslmode" in psycopg2.extensions.parse_dsn(dsn):
        return dsn
    keywords = dict(tls) if tls is not None else verified_tls()
    merged: str = psycopg2.extensions.make_dsn(dsn, **keywords)
    return merged
