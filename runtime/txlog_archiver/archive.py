"""The transaction-log archive: a directory of immutable, LSN-ordered segment files.

A segment holds whole committed transactions, one JSON object per line, in commit order:
``{"xid", "lsn", "end_lsn", "commit_time", "changes": [...]}`` (``changes`` are wal2json
format-2 records). Its name carries the range it covers, so the archive can be listed, searched
by time and resumed without opening a file::

    <first end LSN:016X>-<last end LSN:016X>_<first commit time>_<last commit time>.jsonl

A segment becomes visible only complete and on disk: written to a temporary name, fsynced,
renamed, and the directory fsynced.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEGMENT_RE = re.compile(
    r"^(?P<first>[0-9A-F]{16})-(?P<last>[0-9A-F]{16})_(?P<t0>\d{8}T\d{12}Z)_(?P<t1>\d{8}T\d{12}Z)\.jsonl$"
)
TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"
# Buffers per writev call (Linux allows 1024). Short system calls hand the CPU back quickly to
# the thread reading the replication stream; long ones let the server's sender wait on a full
# socket (docs/txlog.md has the figures).
_WRITE_BUFFERS = 64


class ArchiveError(RuntimeError):
    """The archive cannot be read or written; the message says what to fix."""


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` -> integer position."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_commit_time(text: str) -> datetime:
    """wal2json's ``2026-11-22 00:39:12.710667+00`` as an aware datetime."""
    stamp = datetime.fromisoformat(text.replace(" ", "T"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def transaction_line(
    xid: int, lsn: str, end_lsn: int, commit_time: str, changes: list[bytes]
) -> bytes:
    """One archived transaction as a JSON line; ``changes`` are wal2json records as received.

    Built by hand: this runs once per transaction. The fields are an integer, an LSN and a
    timestamp, none of which needs JSON escaping.
    """
    head = (
        f'{{"xid":{xid},"lsn":"{lsn}","end_lsn":{end_lsn},"commit_time":"{commit_time}","changes":['
    ).encode()
    return head + b",".join(changes) + b"]}\n"


def _write_all(descriptor: int, lines: list[bytes]) -> None:
    """Write the lines in order with gathered writes.

    The kernel copies straight from the line buffers, and Python's lock is released meanwhile:
    the thread reading the replication stream keeps running (one joined copy of a segment
    would hold it for milliseconds).
    """
    for start in range(0, len(lines), _WRITE_BUFFERS):
        chunk = lines[start : start + _WRITE_BUFFERS]
        written = os.writev(descriptor, chunk)
        if written < sum(map(len, chunk)):  # a short write (a full disk raises on the rest)
            rest = memoryview(b"".join(chunk))[written:]
            while rest:
                rest = rest[os.write(descriptor, rest) :]


@dataclass(frozen=True)
class Bound:
    """End LSN and commit time of the first or last transaction of a segment."""

    end_lsn: int
    commit_time: str


@dataclass(frozen=True)
class Segment:
    path: Path
    first_end_lsn: int
    last_end_lsn: int
    first_commit: datetime
    last_commit: datetime

    @classmethod
    def from_path(cls, path: Path) -> Segment | None:
        match = SEGMENT_RE.match(path.name)
        if not match:
            return None
        return cls(
            path=path,
            first_end_lsn=int(match["first"], 16),
            last_end_lsn=int(match["last"], 16),
            first_commit=datetime.strptime(match["t0"], TIME_FORMAT).replace(tzinfo=UTC),
            last_commit=datetime.strptime(match["t1"], TIME_FORMAT).replace(tzinfo=UTC),
        )

    def transactions(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as handle:
            for line in handle:
                yield json.loads(line)


class Archive:
    """A directory of segments; the highest end LSN in it is what the archive has."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def check_writable(self) -> None:
        if not self.directory.is_dir():
            raise ArchiveError(
                f"archive directory {self.directory} does not exist; create it or mount the "
                "EFS access point there"
            )
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise ArchiveError(
                f"archive directory {self.directory} is not writable by uid {os.getuid()}; "
                "nothing was archived and the replication slot was not advanced"
            )

    def segments(self) -> list[Segment]:
        if not self.directory.is_dir():
            return []
        found = (Segment.from_path(p) for p in self.directory.iterdir())
        return sorted((s for s in found if s is not None), key=lambda s: s.first_end_lsn)

    def highest_end_lsn(self) -> int:
        segments = self.segments()
        return segments[-1].last_end_lsn if segments else 0

    def write_segment(self, lines: list[bytes], first: Bound, last: Bound) -> Segment:
        """Write whole transactions (see :func:`transaction_line`) durably; return the segment."""
        if not lines:
            raise ValueError("a segment holds at least one transaction")
        t0 = parse_commit_time(first.commit_time).strftime(TIME_FORMAT)
        t1 = parse_commit_time(last.commit_time).strftime(TIME_FORMAT)
        name = f"{first.end_lsn:016X}-{last.end_lsn:016X}_{t0}_{t1}.jsonl"
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                _write_all(descriptor, lines)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.rename(temporary, final)
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise ArchiveError(
                f"cannot write segment {name} to {self.directory}: {exc.strerror or exc}; "
                "nothing was acknowledged, so the replication slot was not advanced"
            ) from exc
        segment = Segment.from_path(final)
        assert segment is not None
        return segment

    def transactions(self) -> Iterator[dict[str, Any]]:
        for segment in self.segments():
            yield from segment.transactions()
