"""A scripted replication stream for the archiver's control flow (no PostgreSQL): a cursor that
hands out wal2json records from a list (None once it is empty, as psycopg2 does when the socket
has nothing), and a connection whose file descriptor select() can wait on. The archive, its
seals and the segment writer are the real ones."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from govdr.txlog.runtime import archiver as archiver_module
from govdr.txlog.runtime.archiver import Archiver, RunStats
from tests.support.archive_keys import writable_archive

STAMP = "2026-01-01 00:00:00.000000+00"


def begin(xid: int, lsn: str, end: str, stamp: str = STAMP) -> bytes:
    return (
        f'{{"action":"B","xid":{xid},"timestamp":"{stamp}","lsn":"{lsn}","nextlsn":"{end}"}}'
    ).encode()


def commit(xid: int, lsn: str, end: str, stamp: str = STAMP) -> bytes:
    return (
        f'{{"action":"C","xid":{xid},"timestamp":"{stamp}","lsn":"{lsn}","nextlsn":"{end}"}}'
    ).encode()


def insert(n: int, pad: int = 100) -> bytes:
    return (
        '{"action":"I","schema":"public","table":"t","columns":[{"name":"id","type":"integer",'
        f'"value":{n}}},{{"name":"n","type":"text","value":"{"x" * pad}"}}]}}'
    ).encode()


class _Message:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class FakeCursor:
    def __init__(self, messages: list[Any], on_empty: Callable[[], None] | None = None) -> None:
        self.messages = list(messages)
        self.wal_end = 0
        self.feedback: list[int] = []
        self.on_empty = on_empty

    def start_replication(self, **_: Any) -> None:
        return None

    def read_message(self) -> _Message | None:
        if self.messages:
            item = self.messages.pop(0)
            if isinstance(item, BaseException):
                raise item
            return _Message(item)
        if self.on_empty is not None:
            self.on_empty()
        return None

    def send_feedback(self, flush_lsn: int, force: bool) -> None:
        self.feedback.append(flush_lsn)


class FakeConnection:
    def __init__(self, cursor: FakeCursor) -> None:
        self._cursor = cursor
        self._a, self._b = socket.socketpair()

    def cursor(self) -> FakeCursor:
        return self._cursor

    def fileno(self) -> int:
        return self._a.fileno()

    def close(self) -> None:
        self._a.close()
        self._b.close()


def scripted_archiver(
    directory: Path, streams: list[FakeCursor], **kwargs: Any
) -> tuple[Archiver, list[FakeCursor]]:
    """An archiver over ``streams`` (one cursor per connection), its archive opened by hand;
    ``run_stream`` drives it (slot management is not part of the script)."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = writable_archive(directory)
    cursors: Iterator[FakeCursor] = iter(streams)

    def no_sql() -> Any:
        raise RuntimeError("the scripted stream has no SQL connection")

    archiver = Archiver(
        archive=archive,
        keyring=None,  # type: ignore[arg-type]  # the archive is opened already
        slot="s",
        connect_sql=no_sql,
        connect_replication=lambda: FakeConnection(next(cursors)),
        **kwargs,
    )
    archiver._settle_acknowledgment = lambda: None  # type: ignore[method-assign]
    return archiver, streams


def run_stream(archiver: Archiver, timeout: float = 10.0) -> RunStats | BaseException | str:
    """Run the archiver's stream loop in a thread; "hung" if it does not end in ``timeout``."""
    archiver._writer = archiver_module._SegmentWriter(archiver.archive)
    result: dict[str, Any] = {}

    def go() -> None:
        try:
            result["stats"] = archiver._run()
        except BaseException as exc:  # reported to the caller
            result["error"] = exc
        finally:
            archiver._writer.close()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return "hung"
    return result.get("stats") or result["error"]
