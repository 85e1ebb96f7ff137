"""The transaction-log archive: a directory of immutable, LSN-ordered segment files.

A segment holds whole committed transactions, one JSON object per line, in commit order:
``{"xid", "lsn", "end_lsn", "commit_time", "changes": [...]}`` (``changes`` are wal2json
format-2 records). Its name carries the range it covers, so the archive can be listed, searched
by time and resumed without opening a file::

    <first end LSN:016X>-<last end LSN:016X>_<first commit time>_<last commit time>.jsonl

A segment becomes visible only complete and on disk: written to a new temporary file
(``O_EXCL|O_NOFOLLOW``), fsynced, linked to its name (never replacing or following what is
there), and the directory fsynced.

``archive.json`` (the manifest, written once) names the server, timeline, database and slot the
archive belongs to; ``gap_<after end LSN>-<resume LSN>.json`` records a stretch of the stream
the archive does not hold.
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
MANIFEST = "archive.json"
GAP_RE = re.compile(r"^gap_(?P<after>[0-9A-F]{16})-(?P<resume>[0-9A-F]{16})\.json$")
_LSN_RE = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
# Buffers per writev call (Linux allows 1024). Short system calls hand the CPU back quickly to
# the thread reading the replication stream; long ones let the server's sender wait on a full
# socket (docs/txlog.md has the figures).
_WRITE_BUFFERS = 64


class ArchiveError(RuntimeError):
    """The archive cannot be read or written; the message says what to fix."""


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` -> integer position; anything else (``-1/5``, ``1/``) is a ValueError."""
    if not isinstance(text, str) or not _LSN_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not an LSN: two groups of 1-8 hexadecimal digits, e.g. 16/B374D848"
        )
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_commit_time(text: str) -> datetime:
    """wal2json's ``2026-11-22 00:39:12.710667+00`` as an aware datetime."""
    stamp = datetime.fromisoformat(text.replace(" ", "T"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def name_time(text: str) -> str:
    """A wal2json commit time in a segment name's form, in UTC whatever the server's TimeZone."""
    return parse_commit_time(text).astimezone(UTC).strftime(TIME_FORMAT)


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
        """The segment a file name describes; None for a name of another form; ArchiveError for
        a segment name whose times or range are impossible."""
        match = SEGMENT_RE.match(path.name)
        if not match:
            return None
        try:
            first_commit = datetime.strptime(match["t0"], TIME_FORMAT).replace(tzinfo=UTC)
            last_commit = datetime.strptime(match["t1"], TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError as exc:
            raise ArchiveError(
                f"{path}: the commit times in the name are not valid dates ({exc}); a segment is "
                "named <first LSN>-<last LSN>_<YYYYMMDDTHHMMSSffffffZ>_<...>.jsonl. Move the "
                "file out of the archive directory"
            ) from None
        first, last = int(match["first"], 16), int(match["last"], 16)
        if first > last or first_commit > last_commit:
            raise ArchiveError(
                f"{path}: the name's range runs backwards (its first LSN or commit time is after "
                "its last); the archiver never writes such a name. Move the file out of the "
                "archive directory"
            )
        return cls(path, first, last, first_commit, last_commit)

    def content_bounds(self) -> tuple[int, int]:
        """End LSNs of the first and last transaction in the file (reads the file)."""
        lines = self.path.read_bytes().splitlines()
        try:
            return int(json.loads(lines[0])["end_lsn"]), int(json.loads(lines[-1])["end_lsn"])
        except (IndexError, ValueError, KeyError, TypeError):
            raise ArchiveError(
                f"{self.path} is named as a segment but holds no archived transactions; move it "
                "out of the archive directory (the archive resumes from the segment before it)"
            ) from None

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
        """The segments, in LSN order; ArchiveError for a ``.jsonl`` file not named as one."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            segment = Segment.from_path(path)
            if segment is not None:
                found.append(segment)
            elif path.name.endswith(".jsonl") and not path.name.startswith("."):
                raise ArchiveError(
                    f"{path} is not a segment name (<16 hex digits>-<16 hex digits>_<UTC time>_"
                    "<UTC time>.jsonl); move it out of the archive directory"
                )
        return sorted(found, key=lambda s: s.first_end_lsn)

    def manifest(self) -> dict[str, Any] | None:
        """The archive's identity (``archive.json``), or None before the first run wrote it."""
        path = self.directory / MANIFEST
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ArchiveError(
                f"{path} cannot be read as the archive's manifest ({exc}); restore it from a "
                "copy or archive into a new directory"
            ) from None
        if not isinstance(data, dict):
            raise ArchiveError(f"{path} is not a JSON object; restore it from a copy")
        return data

    def write_manifest(self, identity: dict[str, Any]) -> None:
        """Write ``archive.json`` once; an existing one is never replaced."""
        self._create(MANIFEST, json.dumps(identity, indent=2, sort_keys=True).encode() + b"\n")

    def gaps(self) -> list[tuple[int, int]]:
        """Recorded gaps as (end LSN archived before it, LSN the stream resumed from)."""
        if not self.directory.is_dir():
            return []
        found = (GAP_RE.match(p.name) for p in self.directory.iterdir())
        return sorted((int(m["after"], 16), int(m["resume"], 16)) for m in found if m)

    def record_gap(self, after: int, resume: int, reason: str) -> Path:
        """Record that the stream between ``after`` and ``resume`` is not in the archive."""
        name = f"gap_{after:016X}-{resume:016X}.json"
        body = {"after_end_lsn": after, "resume_lsn": resume, "reason": reason}
        if not (self.directory / name).exists():
            self._create(name, json.dumps(body, sort_keys=True).encode() + b"\n")
        return self.directory / name

    def _create(self, name: str, data: bytes) -> None:
        """Create a small file durably under a name that must not exist yet."""
        self._publish(name, [data])

    def _publish(self, name: str, lines: list[bytes]) -> None:
        """Write a new temporary file (never following or reusing what is there), fsync it,
        link it to ``name`` (fails if the name exists, symlink or not), fsync the directory."""
        final = self.directory / name
        temporary = self.directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            descriptor = os.open(temporary, _NEW_FILE, 0o666)
            try:
                _write_all(descriptor, lines)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.link(temporary, final, follow_symlinks=False)
            temporary.unlink()
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except FileExistsError:
            temporary.unlink(missing_ok=True)
            raise ArchiveError(
                f"cannot write {name} to {self.directory}: a file or link of that name already "
                "exists and is never replaced; move it out of the archive directory. Nothing "
                "was acknowledged, so the replication slot was not advanced"
            ) from None
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise ArchiveError(
                f"cannot write {name} to {self.directory}: {exc.strerror or exc}; "
                "nothing was acknowledged, so the replication slot was not advanced"
            ) from exc

    def highest_end_lsn(self) -> int:
        segments = self.segments()
        return segments[-1].last_end_lsn if segments else 0

    def write_segment(self, lines: list[bytes], first: Bound, last: Bound) -> Segment:
        """Write whole transactions (see :func:`transaction_line`) durably; return the segment."""
        if not lines:
            raise ValueError("a segment holds at least one transaction")
        t0, t1 = name_time(first.commit_time), name_time(last.commit_time)
        name = f"{first.end_lsn:016X}-{last.end_lsn:016X}_{t0}_{t1}.jsonl"
        final = self.directory / name
        self._publish(name, lines)
        segment = Segment.from_path(final)
        assert segment is not None
        return segment

    def transactions(self) -> Iterator[dict[str, Any]]:
        for segment in self.segments():
            yield from segment.transactions()
