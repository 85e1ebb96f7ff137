"""The PostgreSQL fixture of the runtime tests (tests/support/pgcluster.py starts it)."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psycopg2
import psycopg2.extras
import pytest

from govdr.txlog.runtime.archive import Archive
from govdr.txlog.runtime.archiver import Archiver, ensure_slot
from tests.support.archive_keys import key_file, keyring
from tests.support.pgcluster import ClusterError, Postgres, start_cluster, stop_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        server = start_cluster()
    except ClusterError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        stop_cluster(server)


SLOT = "govdr_txlog"
WITNESS = "witness"


class Db:
    """A fresh database with the archiver's slot and a witness slot created at one point."""

    def __init__(self, postgres: Postgres) -> None:
        self.pg = postgres
        self.name = f"t_{uuid.uuid4().hex[:10]}"
        postgres.psql(f"CREATE DATABASE {self.name}")
        self.dsn = postgres.dsn(self.name)

    def sql(self, statement: str) -> str:
        return self.pg.psql(statement, self.name)

    def insert_notes(self, note: str, count: int) -> list[int]:
        """``count`` transactions of one ledger row each; their xids."""
        xids = []
        for i in range(count):
            row = self.sql(
                f"INSERT INTO ledger(note) VALUES ('{note}-{i}') RETURNING txid_current()"
            )
            xids.append(int(row.splitlines()[0]))
        return xids

    def cli_command(self, directory: Path, *extra: str) -> list[str]:
        """The archiver's command line for this database and ``directory`` (its key beside it)."""
        return [
            sys.executable,
            "-m",
            "govdr.txlog.runtime",
            "--dsn",
            # A DSN naming its own sslmode is used as given (a Unix socket has no TLS).
            f"{self.dsn} sslmode=disable",
            "--dir",
            str(directory),
            "--key-file",
            str(key_file(directory)),
            "--slot",
            SLOT,
            *extra,
        ]

    def create_slots(self) -> None:
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cursor:
            assert ensure_slot(cursor, SLOT) is True
            assert ensure_slot(cursor, SLOT) is False  # idempotent
            cursor.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (WITNESS,)
            )
        conn.close()

    def witness_xids(self) -> list[int]:
        rows = self.sql(
            f"SELECT data FROM pg_logical_slot_peek_changes('{WITNESS}', NULL, NULL) "
            "WHERE data LIKE 'COMMIT %'"
        )
        return [int(line.split()[1]) for line in rows.splitlines() if line]

    def confirmed_flush(self) -> str:
        """The slot's confirmed position once its reader is gone: the walsender applies the
        client's last feedback before it exits, so only then is the value final."""
        self.wait_until_slots_inactive()
        return self.sql(
            f"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        )

    def archiver(self, directory: Path, **kwargs: object) -> Archiver:
        kwargs.setdefault("keyring", keyring(directory))
        return Archiver(
            archive=Archive(directory),
            slot=SLOT,
            connect_sql=lambda: psycopg2.connect(self.dsn),
            connect_replication=lambda: psycopg2.connect(
                self.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
            ),
            **kwargs,  # type: ignore[arg-type]
        )

    def wait_until_slots_inactive(self) -> None:
        """The walsender of a run that just ended exits a moment after its client closed (on a
        loaded machine that moment can be long); wait up to 10 s for it."""
        for _ in range(200):
            active = self.sql(
                f"SELECT count(*) FROM pg_replication_slots WHERE database = '{self.name}' "
                "AND active"
            )
            if active == "0":
                return
            time.sleep(0.05)

    def drop(self) -> None:
        # An active slot cannot be dropped.
        self.wait_until_slots_inactive()
        for slot in (SLOT, WITNESS):
            self.sql(
                f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                f"WHERE slot_name = '{slot}' AND database = '{self.name}'"
            )
        self.pg.psql(f"DROP DATABASE {self.name}")


@pytest.fixture
def db(postgres: Postgres) -> Iterator[Db]:
    database = Db(postgres)
    database.sql("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text)")
    yield database
    database.drop()


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP endpoint standing in for CloudFormation's pre-signed response URL."""
    _Receiver.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response?sig=x", _Receiver.bodies
    server.shutdown()
    server.server_close()
