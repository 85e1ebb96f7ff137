"""A throwaway PostgreSQL 15 cluster with wal2json (tests and benchmarks).

The cluster lives in a temporary directory, listens only on a Unix socket there (and a free
port number for the socket name), and runs as the ``postgres`` system user when the tests run
as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class Postgres:
    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    port: int
    as_user: list[str]

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

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


def start_cluster() -> Postgres:
    """initdb and start a cluster in a new temporary directory; stop it with stop_cluster()."""
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
    (data / "pg_hba.conf").write_text(
        "local all postgres trust\nlocal replication postgres trust\n"
        "local all all scram-sha-256\nlocal replication all scram-sha-256\n"
    )
    server = Postgres(bin_dir, data, root, port, as_user)
    server.ctl("-w", "start", "-l", str(root / "server.log"))
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
