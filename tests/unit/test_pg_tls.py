"""govdr/lambda_support/pg_tls.py: the keywords, the CA override, the DSN merge, libpq 16+
everywhere, and
the shared files in every Lambda bundle (real servers: tests/runtime/test_pg_tls.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg2.extensions
import pytest

from govdr.constructs import python_bundle
from govdr.lambda_support import pg_tls
from govdr.lambda_support.pg_tls import (
    CA_BUNDLE,
    ROOT_CERT_ENV,
    TlsSetupError,
    tls_from_env,
    verified_tls,
    with_verified_tls,
)

# require_auth arrived in libpq 16 (https://www.postgresql.org/docs/16/libpq-connect.html);
# an older libpq refuses the DSN with 'invalid connection option "require_auth"'.
LIBPQ_REQUIRE_AUTH = 160000


def test_verified_tls_is_verify_full_with_the_pinned_roots_and_scram() -> None:
    assert verified_tls() == {
        "sslmode": "verify-full",
        "sslrootcert": str(CA_BUNDLE),
        "require_auth": "scram-sha-256",
    }
    assert CA_BUNDLE.name == "rds-ca-eu-central-2.pem" and CA_BUNDLE.is_file()
    assert verified_tls(auth=pg_tls.IAM_TOKEN)["require_auth"] == "password"
    with pytest.raises(ValueError, match="auth 'md5' is not one of scram-sha-256, password"):
        verified_tls(auth="md5")


def test_a_missing_ca_file_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsSetupError) as raised:
        verified_tls(root_cert=missing)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"CA bundle {missing} does not exist")
    assert "rds-ca-eu-central-2.pem, shipped with govdr" in message


def test_the_environment_names_another_ca_but_never_weakens_the_mode(tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {ROOT_CERT_ENV: str(other), "PGSSLMODE": "require", "PGREQUIREAUTH": "password"}
    assert tls_from_env(env) == {
        "sslmode": "verify-full",
        "sslrootcert": str(other),
        "require_auth": "scram-sha-256",
    }
    assert tls_from_env({}) == verified_tls()
    assert tls_from_env({ROOT_CERT_ENV: ""}) == verified_tls()
    # The twin: the named file must exist; nothing falls back to the pinned roots or to require.
    with pytest.raises(TlsSetupError, match="does not exist"):
        tls_from_env({ROOT_CERT_ENV: str(tmp_path / "missing.pem")})


def test_a_dsn_without_sslmode_gets_verified_tls_one_with_sslmode_is_kept() -> None:
    merged = psycopg2.extensions.parse_dsn(with_verified_tls("host=db.example dbname=govdr"))
    assert merged == {"host": "db.example", "dbname": "govdr", **verified_tls()}
    uri = psycopg2.extensions.parse_dsn(with_verified_tls("postgresql://u@db.example/govdr"))
    assert uri["sslmode"] == "verify-full" and uri["user"] == "u"
    # The twin: an operator's own sslmode (a local PostgreSQL) is used as given.
    local = "host=/var/run/postgresql dbname=restored sslmode=disable"
    assert with_verified_tls(local) == local
    with pytest.raises(psycopg2.ProgrammingError):
        with_verified_tls("host=x password")


def test_local_psycopg2_links_libpq_16_or_newer() -> None:
    version = psycopg2.extensions.libpq_version()
    assert version >= LIBPQ_REQUIRE_AUTH, f"libpq {version} has no require_auth"
    # The keyword is accepted by this libpq (an older one fails to parse the DSN).
    assert psycopg2.extensions.parse_dsn("require_auth=scram-sha-256")


def bundled_libpq_major(libs: Path) -> int:
    """The major version of the libpq in a psycopg2-binary wheel's ``psycopg2_binary.libs``.

    libpq's shared-library version is 5.<major> since PostgreSQL 10 (SO_MINOR_VERSION =
    MAJORVERSION in src/interfaces/libpq/Makefile,
    https://github.com/postgres/postgres/blob/REL_17_STABLE/src/interfaces/libpq/Makefile);
    the wheel is for arm64, so it is inspected, not loaded. A libpq without the
    ``require_auth`` connection option counts as older than 16.
    """
    [library] = [p for p in libs.glob("libpq*.so.5.*")]
    match = re.fullmatch(r"libpq(?:-[0-9a-f]+)?\.so\.5\.(\d+)", library.name)
    assert match, library.name
    major = int(match.group(1))
    if b"require_auth\x00" not in library.read_bytes():
        return min(major, 15)
    return major


def test_the_lambda_bundles_psycopg2_binary_carries_libpq_16_or_newer() -> None:
    """psycopg2-binary 2.9.8 and later bundle PostgreSQL 16+ libpq
    (https://www.psycopg.org/docs/news.html); this checks the pinned wheel itself, as
    installed for the Lambda platform (the cache every synth uses)."""
    pin = re.search(
        r"^psycopg2-binary==(\S+)", python_bundle.REQUIREMENTS.read_text(), re.MULTILINE
    )
    assert pin, "govdr/lambda_support/lambda-requirements.txt pins psycopg2-binary"
    installed = python_bundle.install_dependencies()
    assert (installed / f"psycopg2_binary-{pin.group(1)}.dist-info").is_dir()
    assert bundled_libpq_major(installed / "psycopg2_binary.libs") >= 16


def test_an_old_or_featureless_libpq_is_recognised(tmp_path: Path) -> None:
    """The twin of the bundle check: libpq 15, and a 17 without require_auth, are refused."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "libpq-0a1b2c3d.so.5.15").write_bytes(b"sslmode\x00require_auth\x00")
    assert bundled_libpq_major(old) == 15
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    (stripped / "libpq-0a1b2c3d.so.5.17").write_bytes(b"sslmode\x00")
    assert bundled_libpq_major(stripped) < 16
    good = tmp_path / "good"
    good.mkdir()
    (good / "libpq-0a1b2c3d.so.5.17").write_bytes(b"sslmode\x00require_auth\x00")
    assert bundled_libpq_major(good) == 17


def bundle_lacks(bundle: Path) -> list[str]:
    """The shared TLS files a bundle does not carry, byte for byte as in govdr/lambda_support/."""
    missing = []
    support = python_bundle.GOVDR_DIR / python_bundle.LAMBDA_SUPPORT
    for name in ("pg_tls.py", CA_BUNDLE.name):
        shipped = bundle / "govdr" / "lambda_support" / name
        if not shipped.is_file() or shipped.read_bytes() != (support / name).read_bytes():
            missing.append(f"govdr/lambda_support/{name}")
    return missing


@pytest.mark.parametrize("package", ["txlog", "credentials"])
def test_the_lambda_bundle_ships_pg_tls_and_the_pinned_roots(package: str, tmp_path: Path) -> None:
    bundler = python_bundle._LocalBundler((package,), dependencies=False)
    assert bundler.try_bundle(str(tmp_path)) is True
    assert bundle_lacks(tmp_path) == []
    # The bundle verifies with its own copy of the roots (the Lambda's /var/task).
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from govdr.lambda_support.pg_tls import verified_tls; print(verified_tls())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    support = tmp_path.resolve() / "govdr" / "lambda_support"
    assert str(support / CA_BUNDLE.name) in done.stdout
    # The twin: the same bundle without the CA file is reported.
    (support / CA_BUNDLE.name).unlink()
    assert bundle_lacks(tmp_path) == [f"govdr/lambda_support/{CA_BUNDLE.name}"]
