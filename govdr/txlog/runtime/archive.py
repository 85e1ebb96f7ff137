"""The transaction-log archive: a directory of immutable, LSN-ordered segment files.

A segment holds whole committed transactions, one JSON object per line, in commit order:
``{"xid", "lsn", "end_lsn", "commit_time", "changes": [...]}`` (``changes`` are wal2json
format-2 records). A transaction too large to hold in memory (see
:mod:`govdr.txlog.runtime.spill`) is a segment of its own, written as consecutive *part*
lines that each carry the same fields plus ``"part": k`` (from 0; the last also
``"last": true``) and a share of the changes; readers stream them, one part at a time. Its
name carries the range it covers, so the archive can be listed, searched by time and resumed
without opening a file::

    <first end LSN:016X>-<last end LSN:016X>_<first commit time>_<last commit time>.jsonl

A segment becomes visible only complete and on disk: written to a new temporary file
(``O_EXCL|O_NOFOLLOW``), fsynced, linked to its name (never replacing or following what is
there), and the directory fsynced.

Its last line is its seal (:mod:`govdr.txlog.runtime.integrity`): the SHA-256 of the lines
before it and an HMAC chaining it to the record before it.

``archive.json`` (the manifest, written once) names the server, timeline, database and slot the
archive belongs to and holds the KMS-encrypted key of its seals;
``gap_<after end LSN>-<resume LSN>.json`` records (sealed, in the chain) a stretch of the stream
the archive does not hold.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govdr.txlog.runtime.errors import ArchiveError as ArchiveError
from govdr.txlog.runtime.errors import IntegrityError as IntegrityError
from govdr.txlog.runtime.integrity import (
    ArchiveKey,
    Seal,
    digest_lines,
    gap_mac,
    manifest_mac,
    parse_seal,
    seal_segment,
)

SEGMENT_RE = re.compile(
    r"^(?P<first>[0-9A-F]{16})-(?P<last>[0-9A-F]{16})_(?P<t0>\d{8}T\d{12}Z)_(?P<t1>\d{8}T\d{12}Z)\.jsonl$"
)
TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"
MANIFEST = "archive.json"
GAP_RE = re.compile(r"^gap_(?P<after>[0-9A-F]{16})-(?P<resume>[0-9A-F]{16})\.json$")
# The prune anchor: the chain starts here once the oldest records were pruned (Archive.prune).
PRUNED_RE = re.compile(r"^pruned_(?P<through>[0-9A-F]{16})\.json$")
# Where the slot was confirmed beyond the archive's end with nothing for the archive between
# (Archive.record_position).
POSITION_RE = re.compile(r"^position_(?P<lsn>[0-9A-F]{16})\.json$")
_LSN_RE = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
_END_LSN = re.compile(rb'"end_lsn":(\d+),')
_PART = re.compile(rb',"part":(\d+)(?P<last>,"last":true)?$')
# A line's fields come before its changes; the head is searched only up to there.
_CHANGES = b',"changes":['
_HEAD_BYTES = 512
# The longest line a reader accepts: one change of PostgreSQL's largest field (1 GB) with its
# JSON escaping and the line's fields. Longer is not an archived transaction.
MAX_LINE_BYTES = 2 * 1024**3
# A segment is checked into a private copy, then parsed from it (what was verified is what is
# read, whatever happens to the file meanwhile); that copy stays in memory up to this size.
_SPOOL_MEMORY = 16 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
# Buffers per writev call (Linux allows 1024). Short system calls hand the CPU back quickly to
# the thread reading the replication stream; long ones let the server's sender wait on a full
# socket (docs/txlog.md has the figures).
_WRITE_BUFFERS = 64
_WRITE_BYTES = 1024 * 1024


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


def transaction_head(
    xid: int,
    lsn: str,
    end_lsn: int,
    commit_time: str,
    part: int | None = None,
    *,
    last: bool = False,
) -> bytes:
    """A transaction line up to its changes; ``part`` k of a large transaction (``last`` for
    its final part).

    Built by hand: this runs once per transaction. The fields are integers, an LSN and a
    timestamp, none of which needs JSON escaping.
    """
    parts = "" if part is None else f',"part":{part}' + (',"last":true' if last else "")
    return (
        f'{{"xid":{xid},"lsn":"{lsn}","end_lsn":{end_lsn},"commit_time":"{commit_time}"'
        f'{parts},"changes":['
    ).encode()


def transaction_line(
    xid: int, lsn: str, end_lsn: int, commit_time: str, changes: list[bytes]
) -> bytes:
    """One archived transaction as a JSON line; ``changes`` are wal2json records as received."""
    return transaction_head(xid, lsn, end_lsn, commit_time) + b",".join(changes) + b"]}\n"


def is_last_piece(piece: dict[str, Any]) -> bool:
    """Whether a parsed line completes its transaction (a whole one, or its last part)."""
    return "part" not in piece or piece.get("last") is True


def _write_all(descriptor: int, lines: Iterable[bytes]) -> None:
    """Write the lines in order with gathered writes (``lines`` may be a generator: a spilled
    transaction's parts are produced one at a time).

    The kernel copies straight from the line buffers, and Python's lock is released meanwhile:
    the thread reading the replication stream keeps running (one joined copy of a segment
    would hold it for milliseconds).
    """
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        # A call's worth of lines, or of bytes: a spilled transaction's part lines are large,
        # and memory stays bounded by writing each soon.
        if len(chunk) >= _WRITE_BUFFERS or size >= _WRITE_BYTES:
            _writev(descriptor, chunk)
            chunk, size = [], 0
    if chunk:
        _writev(descriptor, chunk)


def _writev(descriptor: int, chunk: list[bytes]) -> None:
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

    def read(self, key: ArchiveKey | None = None) -> SegmentContent:
        """The segment's content and seal, checked: the last line is a seal, the lines before it
        match its SHA-256, each is an archived transaction or part of one, their end LSNs rise
        and match the name, a large transaction's parts are complete and in order, and (with
        ``key``) the seal's MAC verifies. IntegrityError names the file and what is wrong.

        The file is read once, in chunks, into a private copy that the parsers read: memory
        stays bounded for a segment of any size, and what was checked is what is parsed.
        """
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        try:
            return self._check(spool, key)
        except BaseException:
            spool.close()
            raise

    def check(self, key: ArchiveKey | None = None) -> Seal:
        """:meth:`read`'s checks without the private copy: the file is streamed once and
        nothing is written anywhere (the archiver checks the chain's tail this way before each
        run, so a segment of any size needs neither memory nor the function's /tmp)."""
        with self._check(_Discard(), key) as content:
            return content.seal

    def _check(self, spool: Any, key: ArchiveKey | None) -> SegmentContent:
        digest = hashlib.sha256()
        order = _Order(self.path)
        previous: bytes | None = None
        buffered: list[bytes] = []
        size = 0
        with self.path.open("rb") as handle:
            while line := handle.readline(MAX_LINE_BYTES + 1):
                if len(line) > MAX_LINE_BYTES:
                    raise IntegrityError(
                        f"{self.path}, line {order.number + 1}: longer than {MAX_LINE_BYTES} "
                        "bytes, which no archived transaction is"
                    )
                if previous is not None:  # the last line is the seal, not part of the digest
                    order.add(previous)
                    buffered.append(previous)
                    size += len(previous)
                    if size >= _READ_CHUNK:
                        data = b"".join(buffered)
                        digest.update(data)
                        spool.write(data)
                        buffered, size = [], 0
                previous = line
        data = b"".join(buffered)
        digest.update(data)
        spool.write(data)
        seal = parse_seal(previous) if previous and previous.endswith(b"\n") else None
        if seal is None:
            raise IntegrityError(
                f"{self.path}: its last line is not a seal: the file is truncated or was not "
                "written by the archiver"
            )
        if digest.hexdigest() != seal.sha256:
            raise IntegrityError(
                f"{self.path}: its content does not match its seal's SHA-256: the file was "
                "changed after it was written"
            )
        if key is not None and not key.verifies(
            seal.mac, "segment", self.path.name, seal.prev, seal.sha256
        ):
            raise IntegrityError(
                f"{self.path}: its seal does not verify with the archive's key: the seal was "
                "forged, the file was renamed, or it comes from another archive"
            )
        order.finish(self.first_end_lsn, self.last_end_lsn)
        spool.seek(0)
        return SegmentContent(spool, seal, order.transactions)

    def transactions(
        self, key: ArchiveKey | None = None, parse_float: Any = None
    ) -> Iterator[dict[str, Any]]:
        """The segment's whole transactions (a large one's parts joined), after :meth:`read`'s
        checks. :meth:`pieces` streams a large transaction instead."""
        yield from self.parse(self.read(key), parse_float)

    def pieces(self, content: SegmentContent, parse_float: Any = None) -> Iterator[dict[str, Any]]:
        """The segment's lines as parsed objects: whole transactions, or parts of one
        (``part``/``last``, see :func:`is_last_piece`), one at a time."""
        with content:
            for number, line in enumerate(content.spool, start=1):
                try:
                    piece = json.loads(line, parse_float=parse_float)
                except ValueError as exc:
                    raise IntegrityError(f"{self.path}, line {number}: not JSON ({exc})") from None
                if not (
                    isinstance(piece, dict)
                    and isinstance(piece.get("xid"), int)
                    and isinstance(piece.get("end_lsn"), int)
                    and isinstance(piece.get("commit_time"), str)
                    and isinstance(piece.get("changes"), list)
                ):
                    raise IntegrityError(
                        f"{self.path}, line {number}: not an archived transaction (xid, "
                        "end_lsn, commit_time and changes are required)"
                    )
                yield piece

    def parse(self, content: SegmentContent, parse_float: Any = None) -> Iterator[dict[str, Any]]:
        """Whole transactions: a large transaction's parts are joined into one."""
        changes: list[Any] = []
        for piece in self.pieces(content, parse_float):
            if "part" not in piece:
                yield piece
                continue
            changes.extend(piece["changes"])
            if is_last_piece(piece):
                whole = {k: v for k, v in piece.items() if k not in ("part", "last")}
                whole["changes"], changes = changes, []
                yield whole


class _Order:
    """Checks a segment's lines as they are read: each is an archived transaction or part of
    one, end LSNs rise from one transaction to the next, parts come complete and in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.number = 0
        self.transactions = 0
        self.first = self.last = 0
        # (next part, end LSN) while inside a large transaction's parts.
        self.open: tuple[int, int] | None = None

    def add(self, line: bytes) -> None:
        self.number += 1
        end = line.find(_CHANGES, 0, _HEAD_BYTES)
        head = line[:end] if end > 0 else b""
        match = _END_LSN.search(head + b",")
        if not head.startswith(b'{"xid":') or match is None:
            raise IntegrityError(f"{self.path}, line {self.number}: not an archived transaction")
        end_lsn = int(match[1])
        part = _PART.search(head)
        if self.open is not None:
            expected, open_lsn = self.open
            if part is None or (int(part[1]), end_lsn) != (expected, open_lsn):
                raise IntegrityError(
                    f"{self.path}, line {self.number}: part {expected} of the transaction "
                    f"ending at {format_lsn(open_lsn)} was expected: a large transaction's "
                    "parts are missing, reordered or mixed"
                )
            self._part_done(part, end_lsn)
            return
        if self.number > 1 and end_lsn <= self.last:
            raise IntegrityError(f"{self.path}: its transactions are not in LSN order")
        self.first = self.first or end_lsn
        self.last = end_lsn
        if part is None:
            self.transactions += 1
            return
        if int(part[1]) != 0:
            raise IntegrityError(
                f"{self.path}, line {self.number}: part {int(part[1])} begins a transaction: "
                "a large transaction's first parts are missing"
            )
        self._part_done(part, end_lsn)

    def _part_done(self, part: re.Match[bytes], end_lsn: int) -> None:
        if part["last"]:
            self.open = None
            self.transactions += 1
        else:
            self.open = (int(part[1]) + 1, end_lsn)

    def finish(self, first: int, last: int) -> None:
        if self.open is not None:
            raise IntegrityError(
                f"{self.path}: it ends before the last part of its last transaction (part "
                f"{self.open[0]} or later): the file is incomplete"
            )
        if not self.number or (self.first, self.last) != (first, last):
            shown = f"{format_lsn(self.first)}..{format_lsn(self.last)}" if self.number else "none"
            raise IntegrityError(
                f"{self.path}: the name says end LSNs {format_lsn(first)}.."
                f"{format_lsn(last)}, the content {shown}"
            )


class _Discard:
    """A sink for :meth:`Segment.check`: the bytes were hashed and ordered, not kept."""

    def write(self, data: bytes) -> int:
        return len(data)

    def seek(self, offset: int) -> int:
        return 0

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class SegmentContent:
    """A checked segment: a private copy of its lines (without the seal), read once."""

    spool: Any
    seal: Seal
    transactions: int

    def __enter__(self) -> SegmentContent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.spool.close()


@dataclass(frozen=True)
class Gap:
    """A recorded stretch of the stream that the archive does not hold."""

    path: Path
    after_end_lsn: int
    resume_lsn: int

    def read(self, key: ArchiveKey | None = None) -> dict[str, Any]:
        try:
            body = json.loads(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{self.path}: not a readable gap record ({exc})") from None
        if not isinstance(body, dict) or not isinstance(body.get("prev"), str):
            raise IntegrityError(f"{self.path}: not a sealed gap record")
        if (body.get("after_end_lsn"), body.get("resume_lsn")) != (
            self.after_end_lsn,
            self.resume_lsn,
        ):
            raise IntegrityError(f"{self.path}: its content does not match its name")
        if key is not None and not key.verifies(
            body.get("mac"), "gap", self.path.name, _canonical(body)
        ):
            raise IntegrityError(
                f"{self.path}: its seal does not verify with the archive's key: the record was "
                "changed, forged, or comes from another archive"
            )
        return body


Record = Segment | Gap


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in body.items() if k != "mac"}, sort_keys=True, separators=(",", ":")
    )


def _chain_order(record: Record) -> tuple[int, int, int]:
    # Gaps recorded one after another at the same end (the slot replaced twice with nothing
    # archived between) follow each other in the order of their resume LSNs, which rise.
    if isinstance(record, Gap):
        return (record.after_end_lsn, 1, record.resume_lsn)
    return (record.first_end_lsn, 0, 0)


def _pruned(record: Record, through: int) -> bool:
    """Whether a record lies in the pruned stretch (up to end LSN ``through``); a gap recorded
    right after the last pruned segment is kept (it is the first link after the anchor)."""
    if not through:
        return False
    if isinstance(record, Gap):
        return record.after_end_lsn < through
    return record.last_end_lsn <= through


@dataclass(frozen=True)
class ChainStart:
    """Where the chain starts: the manifest, or, once the oldest records were pruned, the
    newest prune anchor (``pruned_<end LSN>.json``), which names the MAC of the last pruned
    segment; the first kept record must link to it."""

    mac: str | None
    through_end_lsn: int = 0
    last_pruned_commit: str | None = None
    anchor: Path | None = None

    def kept(self, records: list[Record]) -> list[Record]:
        """The records after the pruned stretch (a prune interrupted after its anchor may
        have left some of that stretch behind: they are no longer part of the chain)."""
        return [r for r in records if not _pruned(r, self.through_end_lsn)]


@dataclass(frozen=True)
class PruneResult:
    """One prune: what was removed, and the archive's size after it (segments and bytes)."""

    records: int
    bytes: int
    segments_kept: int
    anchor: str | None


@dataclass(frozen=True)
class VerifyReport:
    segments: int
    transactions: int
    gaps: list[dict[str, Any]]
    first_end_lsn: int
    last_end_lsn: int
    last_commit: str | None
    # Set when the oldest records were pruned: the chain starts after this end LSN.
    pruned_through_end_lsn: int = 0
    pruned_last_commit: str | None = None


class Archive:
    """A directory of sealed segments and gap records; the highest end LSN is what it has.

    Reading needs no key (each segment's digest is still checked); :meth:`open_chain` with the
    archive's key verifies the manifest and the chain's tail, and only then may the archive be
    extended (:meth:`write_segment`, :meth:`record_gap`).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key: ArchiveKey | None = None
        self._prev: str | None = None

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

    def gap_records(self) -> list[Gap]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = GAP_RE.match(path.name)
            if match:
                found.append(Gap(path, int(match["after"], 16), int(match["resume"], 16)))
        return sorted(found, key=lambda g: (g.after_end_lsn, g.resume_lsn))

    def records(self) -> list[Record]:
        """Segments and gap records in chain order."""
        return sorted([*self.segments(), *self.gap_records()], key=_chain_order)

    def gaps(self) -> list[tuple[int, int]]:
        """Recorded gaps as (end LSN archived before it, LSN the stream resumed from)."""
        return [(g.after_end_lsn, g.resume_lsn) for g in self.gap_records()]

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

    def create_manifest(
        self, identity: dict[str, Any], key: ArchiveKey, key_record: dict[str, str]
    ) -> None:
        """Write ``archive.json`` once (an existing one is never replaced) and open the chain."""
        if records := self.records():
            raise ArchiveError(
                f"{self.directory} holds segments or gap records ({records[0].path.name}, ...) "
                "but no manifest "
                f"({MANIFEST}): it cannot be verified or extended. Archive into a new, empty "
                "directory; nothing was archived and the replication slot was not touched"
            )
        body: dict[str, Any] = {**identity, "key": key_record}
        body["mac"] = manifest_mac(key, body)
        self._create(MANIFEST, json.dumps(body, indent=2, sort_keys=True).encode() + b"\n")
        self._key, self._prev = key, body["mac"]

    def verify_manifest(self, key: ArchiveKey) -> str:
        """The manifest's MAC, after checking it with the archive's key."""
        manifest = self.manifest()
        path = self.directory / MANIFEST
        if manifest is None:
            raise IntegrityError(f"{path} does not exist: the archive cannot be verified")
        mac = manifest.get("mac")
        if not isinstance(mac, str) or not key.verifies(mac, "manifest", _canonical(manifest)):
            raise IntegrityError(
                f"{path}: its MAC does not verify with the archive's key: the manifest was "
                "changed or forged"
            )
        return mac

    def open_chain(self, key: ArchiveKey) -> None:
        """Verify the manifest and the chain's tail with ``key``; the archive may then be
        extended. The tail must be intact and linked to the record before it."""
        start = self.chain_start(key)
        prev = start.mac
        assert prev is not None
        records = start.kept(self.records())
        if records:
            tail = records[-1]
            try:
                before = self.mac_of(records[-2], key) if len(records) > 1 else prev
                prev = self._verify_record(tail, key, before)
            except IntegrityError as exc:
                raise IntegrityError(
                    f"{exc}. The archive is not extended past a record that fails its check: "
                    "move it out of the archive directory or restore it from a backup of the "
                    "file system (govdr txlog verify checks the rest); nothing was archived and "
                    "the replication slot was not touched"
                ) from None
        self._key, self._prev = key, prev

    @staticmethod
    def mac_of(record: Record, key: ArchiveKey | None) -> str:
        """A record's MAC, checked with ``key`` (when given) against its claimed fields; its
        content is not read (a segment's seal is its last line)."""
        if isinstance(record, Gap):
            return str(record.read(key)["mac"])
        with record.path.open("rb") as handle:
            handle.seek(max(0, record.path.stat().st_size - 4096))
            tail = handle.read().splitlines(keepends=True)
        seal = parse_seal(tail[-1]) if tail else None
        if seal is None or (
            key is not None
            and not key.verifies(seal.mac, "segment", record.path.name, seal.prev, seal.sha256)
        ):
            raise IntegrityError(
                f"{record.path}: its seal is missing or does not verify with the archive's key"
            )
        return seal.mac

    @staticmethod
    def _verify_record(record: Record, key: ArchiveKey, prev: str) -> str:
        """Check one record fully and its link to ``prev``; return its MAC."""
        if isinstance(record, Gap):
            body = record.read(key)
            claimed, mac = body["prev"], body["mac"]
        else:
            seal = record.check(key)
            claimed, mac = seal.prev, seal.mac
        link(record, claimed, prev)
        return str(mac)

    def verify(self, key: ArchiveKey) -> VerifyReport:
        """Check every record: manifest MAC, each segment's digest, MAC and link, LSN order
        without overlap, and gap records; IntegrityError names the first bad file."""
        start = self.chain_start(key)
        prev = start.mac
        assert prev is not None
        segments = transactions = 0
        gaps: list[dict[str, Any]] = []
        first = 0
        last = start.through_end_lsn
        last_commit: str | None = None
        for record in start.kept(self.records()):
            if isinstance(record, Gap):
                body = record.read(key)
                link(record, body["prev"], prev)
                prev = body["mac"]
                if record.after_end_lsn != last or record.resume_lsn < record.after_end_lsn:
                    raise IntegrityError(
                        f"{record.path}: it does not start at the end of the segment before it"
                    )
                gaps.append(
                    {
                        "file": record.path.name,
                        "after_end_lsn": format_lsn(record.after_end_lsn),
                        "resume_lsn": format_lsn(record.resume_lsn),
                        "reason": body.get("reason"),
                    }
                )
                continue
            with record.read(key) as content:
                link(record, content.seal.prev, prev)
                prev = content.seal.mac
                if record.first_end_lsn <= last:
                    raise IntegrityError(
                        f"{record.path}: it overlaps the segment before it (its first end LSN "
                        f"{format_lsn(record.first_end_lsn)} is not after {format_lsn(last)})"
                    )
                commit_times = [piece.get("commit_time") for piece in record.pieces(content)]
            _check_times(record, commit_times[0], commit_times[-1])
            segments += 1
            transactions += content.transactions
            first = first or record.first_end_lsn
            last = record.last_end_lsn
            last_commit = str(commit_times[-1])
        return VerifyReport(
            segments,
            transactions,
            gaps,
            first,
            last,
            last_commit,
            start.through_end_lsn,
            start.last_pruned_commit,
        )

    def record_position(self, confirmed: int, archive_end: int) -> None:
        """Record, sealed, that the slot was confirmed at ``confirmed`` while the archive ended at
        ``archive_end`` with nothing received in between: psycopg2 answers the server's
        keepalives with their position once everything received is acknowledged, so an idle
        database's slot moves past the archive's end without a gap. The next run reads this
        instead of recording one. Only the newest such record is kept."""
        key, _ = self._chain()
        name = f"position_{confirmed:016X}.json"
        if not (self.directory / name).exists():
            body: dict[str, Any] = {
                "confirmed_lsn": confirmed,
                "archive_end": archive_end,
                "recorded_at": datetime.now(UTC).isoformat(),
            }
            body["mac"] = key.mac("position", name, _canonical(body))
            self._create(name, json.dumps(body, sort_keys=True).encode() + b"\n")
        for path in self.directory.iterdir():
            if POSITION_RE.match(path.name) and path.name != name:
                path.unlink(missing_ok=True)

    def confirmed_position(self, archive_end: int) -> int:
        """The slot position recorded for this archive end (record_position), or 0: none, or
        one that fails its seal (then the slot's lead counts as a gap, the safe side)."""
        key = self._key
        if key is None or not self.directory.is_dir():
            return 0
        best = 0
        for path in self.directory.iterdir():
            if not POSITION_RE.match(path.name):
                continue
            try:
                body = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if (
                isinstance(body, dict)
                and key.verifies(body.get("mac"), "position", path.name, _canonical(body))
                and body.get("archive_end") == archive_end
                and isinstance(body.get("confirmed_lsn"), int)
                and path.name == f"position_{body['confirmed_lsn']:016X}.json"
            ):
                best = max(best, int(body["confirmed_lsn"]))
        return best

    def chain_start(self, key: ArchiveKey | None) -> ChainStart:
        """The manifest's MAC, or the newest prune anchor's; with ``key`` both are verified
        (IntegrityError names a forged or changed one)."""
        anchors = sorted(
            (int(m["through"], 16), path)
            for path in (self.directory.iterdir() if self.directory.is_dir() else [])
            if (m := PRUNED_RE.match(path.name))
        )
        if not anchors:
            if key is not None:
                return ChainStart(self.verify_manifest(key))
            claimed = (self.manifest() or {}).get("mac")
            return ChainStart(claimed if isinstance(claimed, str) else None)
        through, path = anchors[-1]
        try:
            body = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{path}: not a readable prune anchor ({exc})") from None
        if not isinstance(body, dict) or body.get("through_end_lsn") != through:
            raise IntegrityError(f"{path}: its content does not match its name")
        if key is not None:
            self.verify_manifest(key)  # the archive's own key, checked first
            if not key.verifies(body.get("mac"), "pruned", path.name, _canonical(body)):
                raise IntegrityError(
                    f"{path}: its seal does not verify with the archive's key: the anchor was "
                    "changed, forged, or comes from another archive"
                )
        last_mac = body.get("last_mac")
        return ChainStart(
            last_mac if isinstance(last_mac, str) else None,
            through,
            body.get("last_commit"),
            path,
        )

    def prune(self, cutoff: datetime) -> PruneResult:
        """Remove, oldest first, the segments whose newest commit is before ``cutoff`` (and the
        gap records among them), never the newest record. Decided from the names alone (they
        carry each segment's commit times), so a run with nothing to prune reads no file. A
        sealed anchor ``pruned_<end LSN>.json`` is written first, naming the MAC of the last
        removed segment so that the chain stays verifiable from there; then the records are
        removed, then the older anchors. An interrupted prune leaves the anchor and some of the
        records it covers: they are outside the chain, and the next prune removes them. The
        chain must be open."""
        key, _ = self._chain()
        start = self.chain_start(key)
        records = self.records()
        kept = start.kept(records)
        stale = [r for r in records if r not in kept]  # left by an interrupted prune
        cut = -1
        # The newest segment always stays, and every record after it: the archive's end (what
        # the next run compares the slot with, and extends) is never pruned.
        newest = max((i for i, r in enumerate(kept) if isinstance(r, Segment)), default=0)
        for index, record in enumerate(kept[:newest]):
            if isinstance(record, Segment):
                if record.last_commit >= cutoff:
                    break
                cut = index
        removed = stale + kept[: cut + 1]
        anchor_name = None
        if cut >= 0:
            last = kept[cut]
            assert isinstance(last, Segment)
            anchor_name = f"pruned_{last.last_end_lsn:016X}.json"
            body: dict[str, Any] = {
                "through_end_lsn": last.last_end_lsn,
                "last_mac": self.mac_of(last, key),
                "last_commit": last.last_commit.isoformat(),
                "first_kept": kept[cut + 1].path.name,
                "cutoff": cutoff.isoformat(),
                "recorded_at": datetime.now(UTC).isoformat(),
            }
            body["mac"] = key.mac("pruned", anchor_name, _canonical(body))
            # A file already at that name would be the newest anchor, which chain_start read
            # and checked above (so the cut lies beyond it): _create refuses it, removing nothing.
            self._create(anchor_name, json.dumps(body, sort_keys=True).encode() + b"\n")
        removed_bytes = 0
        for record in removed:
            try:
                removed_bytes += record.path.stat().st_size
                record.path.unlink()
            except FileNotFoundError:
                continue
        if anchor_name is not None or start.anchor is not None:
            current = anchor_name or (start.anchor.name if start.anchor else None)
            for path in self.directory.iterdir():
                if PRUNED_RE.match(path.name) and path.name != current:
                    path.unlink(missing_ok=True)
        if removed:
            _fsync_directory(self.directory)
        return PruneResult(
            records=len(removed),
            bytes=removed_bytes,
            segments_kept=sum(isinstance(r, Segment) for r in kept[cut + 1 :]),
            anchor=anchor_name,
        )

    def record_gap(self, after: int, resume: int, reason: str, last_commit: str | None) -> Path:
        """Record, sealed in the chain, that the stream between ``after`` and ``resume`` is
        not in the archive."""
        key, prev = self._chain()
        name = f"gap_{after:016X}-{resume:016X}.json"
        if (self.directory / name).exists():
            return self.directory / name
        body: dict[str, Any] = {
            "after_end_lsn": after,
            "resume_lsn": resume,
            "reason": reason,
            "last_commit_before": last_commit,
            "recorded_at": datetime.now(UTC).isoformat(),
            "prev": prev,
        }
        body["mac"] = gap_mac(key, name, body)
        self._create(name, json.dumps(body, sort_keys=True).encode() + b"\n")
        self._prev = body["mac"]
        return self.directory / name

    def _chain(self) -> tuple[ArchiveKey, str]:
        if self._key is None or self._prev is None:
            raise ArchiveError(
                "the archive's chain is not open (open_chain with its key): nothing is written "
                "to an archive whose tail has not been verified"
            )
        return self._key, self._prev

    def _create(self, name: str, data: bytes) -> None:
        """Create a small file durably under a name that must not exist yet."""
        self._publish(name, [data])

    def _publish(self, name: str, lines: list[bytes]) -> None:
        """Write a new temporary file (never following or reusing what is there), fsync it,
        link it to ``name`` (fails if the name exists, symlink or not), fsync the directory."""
        new = _NewFile(self.directory, name)
        try:
            new.write(lines)
        except BaseException:
            new.abort()
            raise
        new.commit()

    def highest_end_lsn(self) -> int:
        segments = self.segments()
        return segments[-1].last_end_lsn if segments else 0

    def write_segment(self, lines: list[bytes], first: Bound, last: Bound) -> Segment:
        """Write whole transactions (see :func:`transaction_line`) durably, sealed and chained
        to the record before; return the segment."""
        if not lines:
            raise ValueError("a segment holds at least one transaction")
        key, prev = self._chain()
        t0, t1 = name_time(first.commit_time), name_time(last.commit_time)
        name = f"{first.end_lsn:016X}-{last.end_lsn:016X}_{t0}_{t1}.jsonl"
        seal, mac = seal_segment(key, name, prev, digest_lines(lines))
        self._publish(name, [*lines, seal])
        self._prev = mac
        segment = Segment.from_path(self.directory / name)
        assert segment is not None
        return segment

    def open_large(self, bound: Bound) -> LargeSegment:
        """Start the segment of one large transaction (``bound``: its end LSN and commit time),
        to be written a part line at a time as the changes arrive (:class:`LargeSegment`)."""
        key, prev = self._chain()
        t = name_time(bound.commit_time)
        name = f"{bound.end_lsn:016X}-{bound.end_lsn:016X}_{t}_{t}.jsonl"
        return LargeSegment(self, _NewFile(self.directory, name), key, prev)

    def transactions(self, key: ArchiveKey | None = None) -> Iterator[dict[str, Any]]:
        for segment in self.segments():
            yield from segment.transactions(key)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _NewFile:
    """A file created new under a temporary name (``O_EXCL|O_NOFOLLOW``: never following or
    reusing what is there), published under its final name only by :meth:`commit`: fsynced,
    linked (fails if the name exists, symlink or not), the directory fsynced."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory, self.name = directory, name
        self.temporary = directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            self.descriptor: int | None = os.open(self.temporary, _NEW_FILE, 0o666)
        except OSError as exc:
            raise self._error(exc) from exc

    def write(self, lines: Iterable[bytes]) -> None:
        assert self.descriptor is not None
        try:
            _write_all(self.descriptor, lines)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from exc

    def commit(self) -> None:
        assert self.descriptor is not None
        final = self.directory / self.name
        try:
            try:
                os.fsync(self.descriptor)
            finally:
                os.close(self.descriptor)
                self.descriptor = None
            os.link(self.temporary, final, follow_symlinks=False)
            self.temporary.unlink()
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except FileExistsError:
            self.abort()
            raise ArchiveError(
                f"cannot write {self.name} to {self.directory}: a file or link of that name "
                "already exists and is never replaced; move it out of the archive directory. "
                "Nothing was acknowledged, so the replication slot was not advanced"
            ) from None
        except OSError as exc:
            self.abort()
            raise self._error(exc) from exc

    def abort(self) -> None:
        """Remove the temporary file (the final name is never touched)."""
        if self.descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(self.descriptor)
            self.descriptor = None
        self.temporary.unlink(missing_ok=True)

    def _error(self, exc: OSError) -> ArchiveError:
        return ArchiveError(
            f"cannot write {self.name} to {self.directory}: {exc.strerror or exc}; "
            "nothing was acknowledged, so the replication slot was not advanced"
        )


class LargeSegment:
    """The segment of one large transaction, written as its part lines arrive: each line is
    hashed and written at once, so no more than one part is ever in memory; :meth:`finish`
    seals, fsyncs and links it, chained to the record before like any segment, and
    :meth:`abort` removes it (a transaction whose COMMIT never came)."""

    def __init__(self, archive: Archive, new: _NewFile, key: ArchiveKey, prev: str) -> None:
        self._archive, self._new, self._key, self._prev = archive, new, key, prev
        self._digest = hashlib.sha256()
        self._lines = 0

    def add(self, line: bytes) -> None:
        self._digest.update(line)
        self._new.write([line])
        self._lines += 1

    def finish(self) -> Segment:
        if not self._lines:
            self._new.abort()
            raise ValueError("a segment holds at least one transaction")
        seal, mac = seal_segment(self._key, self._new.name, self._prev, self._digest.hexdigest())
        self._new.write([seal])
        self._new.commit()
        self._archive._prev = mac
        segment = Segment.from_path(self._archive.directory / self._new.name)
        assert segment is not None
        return segment

    def abort(self) -> None:
        self._new.abort()


def link(record: Record, claimed: Any, prev: str) -> None:
    """``record`` names ``prev`` (the MAC of the record before it) as its predecessor."""
    if not (isinstance(claimed, str) and hmac.compare_digest(claimed, prev)):
        raise IntegrityError(
            f"{record.path}: it does not follow the record before it in the chain: a segment "
            "or gap record before it is missing, or this one was moved or inserted"
        )


def _check_times(segment: Segment, first: Any, last: Any) -> None:
    """The name's commit times are the first and last transaction's, in UTC."""
    try:
        t0, t1 = name_time(first), name_time(last)
    except (AttributeError, TypeError, ValueError):
        raise IntegrityError(f"{segment.path}: a transaction has no valid commit time") from None
    if (t0, t1) != (
        segment.first_commit.strftime(TIME_FORMAT),
        segment.last_commit.strftime(TIME_FORMAT),
    ):
        raise IntegrityError(
            f"{segment.path}: the commit times in its name are not those of its first and last "
            "transaction"
        )
