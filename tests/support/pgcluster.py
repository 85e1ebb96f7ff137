"""A throwaway PostgreSQL 15 cluster with wal2json (tests and benchmarks).

The cluster lives in a temporary directory, listens only on a Unix socket there (and a free
port number for the socket name), and runs as the ``postgres`` system user when the tests run
as root (PostgreSQL refuses to run as root).

With ``tls=True`` it also listens on ``localhost`` (TCP) with TLS only: a throwaway CA signs a
server certificate naming the host ``localhost`` (nothing else: not 127.0.0.1), ``pg_hba``
admits TCP connections only as ``hostssl ... scram-sha-256``, and the superuser ``postgres``
gets a random password for them (``Postgres.password``). Tests verify with the CA's file
(``Postgres.tls.ca_file``), the way the Lambda functions verify RDS with the pinned roots.
"""

from __future__ import annotations

import datetime
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The libpq keywords of the fixture's own connections over its Unix socket, which never
# carries TLS (libpq does not negotiate TLS on a Unix socket, whatever sslmode says).
LOCAL_SOCKET_TLS: dict[str, str] = {"sslmode": "disable"}
TLS_HOST = "localhost"

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)


class ClusterError(RuntimeError):
    """The cluster cannot be started; the message says what to install."""


def _bin_dir() -> Path:
    for candidate in BIN_DIRS:
        if (candidate / "postgres").is_file():
            return candidate
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    raise ClusterError(
        "PostgreSQL 15 server binaries not found: install postgresql-15 (.ci/run does)"
    )


def _knows_setting(bin_dir: Path, setting: str) -> bool:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--describe-config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout
    return any(line.split("\t", 1)[0] == setting for line in out.splitlines())


# PostgreSQL 15.19 (and the other November 2026 minors) let REPLICATION users decode only with
# the output plugins listed in this superuser setting (default: pgoutput, test_decoding).
OUTPUT_PLUGINS_SETTING = "output_plugin_libraries"
OUTPUT_PLUGINS = "pgoutput, test_decoding, wal2json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # the CA certificate that signed the server's certificate
    cert_file: Path
    key_file: Path


def write_ca(directory: Path, name: str) -> tuple[Path, object, object]:
    """A new self-signed CA in ``directory/<name>.crt``: (file, certificate, private key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"govdr test CA {name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def write_server_tls(directory: Path, host: str = TLS_HOST) -> TlsFiles:
    """A throwaway CA and a server certificate (and key) for ``host`` only, signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_file, ca_cert, ca_key = write_ca(directory, "ca")
    assert isinstance(ca_cert, x509.Certificate) and isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file = directory / "server.crt"
    key_file = directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)  # the server refuses a key others can read
    return TlsFiles(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


@dataclass
class Postgres:
    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    port: int
    as_user: list[str]
    tls: TlsFiles | None = None
    # The superuser's password for TCP (TLS) connections; generated per cluster.
    password: str | None = None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def tcp_secret(self, dbname: str = "postgres") -> dict[str, object]:
        """An RDS-style secret of the superuser over TCP (TLS clusters only)."""
        assert self.tls is not None and self.password is not None, "start_cluster(tls=True)"
        return {
            "host": TLS_HOST,
            "port": self.port,
            "username": "postgres",
            "password": self.password,
            "dbname": dbname,
        }

    def prepend_hba(self, line: str) -> None:
        """Put ``line`` first in pg_hba.conf (the first matching line decides) and reload."""
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(f"{line}\n{hba.read_text()}")
        self.ctl("reload")

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def restart(self) -> None:
        self.ctl("-m", "fast", "-w", "restart", "-l", str(self.socket_dir / "server.log"))

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.dsn(dbname),
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return out.stdout.strip()

    def pgbench(self, *args: str, dbname: str = "postgres", fast_commit: bool = False) -> None:
        """Run pgbench; ``fast_commit`` skips the WAL flush wait (load generation only)."""
        env = {**os.environ, "PGOPTIONS": "-c synchronous_commit=off"} if fast_commit else None
        subprocess.run(
            [
                str(self.bin_dir / "pgbench"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                *args,
                dbname,
            ],
            check=True,
            capture_output=True,
            timeout=600,
            env=env,
        )


def start_cluster(*, tls: bool = False) -> Postgres:
    """initdb and start a cluster in a new temporary directory; stop it with stop_cluster().

    ``tls``: also listen on localhost (TCP), TLS and SCRAM only (see the module docstring).
    """
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="govdr-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    os.chmod(root, 0o755)
    data = root / "data"
    port = _free_port()
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            "\nwal_level = logical\nmax_replication_slots = 16\nmax_wal_senders = 16\n"
            f"listen_addresses = ''\nunix_socket_directories = '{root}'\nport = {port}\n"
            "fsync = on\nsynchronous_commit = on\ntrack_commit_timestamp = on\n"
            # No background transactions: the tests count transactions exactly.
            "autovacuum = off\n"
        )
        if _knows_setting(bin_dir, OUTPUT_PLUGINS_SETTING):
            conf.write(f"{OUTPUT_PLUGINS_SETTING} = '{OUTPUT_PLUGINS}'\n")
    # The superuser logs in without a password (the fixture's own connections); every other
    # role must present its password, as on RDS.
    hba = (
        "local all postgres trust\nlocal replication postgres trust\n"
        "local all all scram-sha-256\nlocal replication all scram-sha-256\n"
    )
    files: TlsFiles | None = None
    if tls:
        tls_dir = root / "tls"
        tls_dir.mkdir()
        files = write_server_tls(tls_dir)
        if as_user:
            shutil.chown(files.key_file, "postgres")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{TLS_HOST}'\nssl = on\n"
                f"ssl_cert_file = '{files.cert_file}'\nssl_key_file = '{files.key_file}'\n"
                "ssl_min_protocol_version = 'TLSv1.2'\npassword_encryption = 'scram-sha-256'\n"
            )
        # TCP only over TLS, only with SCRAM (no hostnossl line: a plain connection is refused).
        for address in ("127.0.0.1/32", "::1/128"):
            hba += (
                f"hostssl all all {address} scram-sha-256\n"
                f"hostssl replication all {address} scram-sha-256\n"
            )
    (data / "pg_hba.conf").write_text(hba)
    server = Postgres(bin_dir, data, root, port, as_user, tls=files)
    server.ctl("-w", "start", "-l", str(root / "server.log"))
    if tls:
        server.password = secrets.token_urlsafe(24)
        server.psql(f"ALTER ROLE postgres PASSWORD '{server.password}'")
    lib = (
        subprocess.run(
            [str(bin_dir / "pg_config"), "--pkglibdir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "/usr/lib/postgresql/15/lib"
    )
    if not (Path(lib) / "wal2json.so").is_file():
        server.ctl("-m", "immediate", "stop")
        raise ClusterError(
            "wal2json is not installed: apt-get install postgresql-15-wal2json (.ci/run does)"
        )
    return server


def stop_cluster(server: Postgres) -> None:
    server.ctl("-m", "fast", "stop")
    shutil.rmtree(server.socket_dir, ignore_errors=True)
