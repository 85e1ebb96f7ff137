"""The archive's keyed integrity, against a real PostgreSQL: a sealed, chained archive that
``govdr txlog verify`` accepts intact and rejects, naming the first bad file, after each kind of
damage; readers exit 2 with one line; the archiver refuses to extend a damaged tail; replay
refuses to apply past a break or a recorded gap; and the KMS keyring (moto) binds the key to
the archive's identity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from moto import mock_aws

from govdr.cli.main import main
from govdr.txlog.runtime.archive import Archive, ArchiveError
from govdr.txlog.runtime.errors import IntegrityError, KeyUnavailable
from govdr.txlog.runtime.integrity import (
    ArchiveKey,
    KmsKeyring,
    digest_lines,
    encryption_context,
)
from govdr.txlog.runtime.replay import ReplayGap, Window, replay
from tests.runtime.conftest import SLOT, Db
from tests.support.archive_keys import archive_key, key_file
from tests.support.pgcluster import Postgres

REGION = "eu-central-2"


def _archive(db: Db, directory: Path, transactions: int = 6) -> Archive:
    """An archive of ``transactions`` inserts, two per segment (so it has several)."""
    directory.mkdir(exist_ok=True)
    db.create_slots()
    for n in range(transactions):
        db.sql(f"INSERT INTO ledger(note) VALUES ('row-{n}')")
    db.archiver(directory, idle_seconds=0.3, batch_transactions=2).run()
    archive = Archive(directory)
    assert len(archive.segments()) >= min(3, transactions // 2)
    return archive


def _verify(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(
        ["txlog", "verify", "--dir", str(directory), "--key-file", str(key_file(directory))]
    )
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


def test_an_intact_archive_verifies_with_its_counts(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "archive"
    archive = _archive(db, directory)
    code, out = _verify(directory, capsys)
    assert code == 0, out
    assert f"archive intact: {len(archive.segments())} segments, 6 transactions" in out
    report = archive.verify(archive_key(directory))
    assert report.transactions == 6 and report.gaps == []


def _second(archive: Archive) -> Path:
    return archive.segments()[1].path


def _truncate(archive: Archive) -> Path:
    path = _second(archive)
    path.write_bytes(path.read_bytes()[:-20])
    return path


def _change_a_byte(archive: Archive) -> Path:
    path = _second(archive)
    path.write_bytes(path.read_bytes().replace(b"row-", b"raw-", 1))
    return path


def _reseal_without_the_key(archive: Archive) -> Path:
    """Whoever can write the file system changes a value and recomputes the digest, but cannot
    compute the MAC: the forged seal keeps the old MAC."""
    path = _second(archive)
    lines = path.read_bytes().splitlines(keepends=True)
    body = [line.replace(b"row-", b"raw-") for line in lines[:-1]]
    seal = json.loads(lines[-1])
    seal["seal"]["sha256"] = digest_lines(body)
    path.write_bytes(b"".join(body) + json.dumps(seal).encode() + b"\n")
    return path


def _remove_a_middle_segment(archive: Archive) -> Path:
    segments = archive.segments()
    segments[1].path.unlink()
    return segments[2].path  # the first file that no longer follows its predecessor


def _rename(archive: Archive) -> Path:
    """A segment renamed within its own range shape (the times in its name changed)."""
    path = _second(archive)
    first, last, t0, t1 = path.name[:-6].replace("-", "_", 1).split("_")
    renamed = path.with_name(f"{first}-{last}_{t0}_{t0}.jsonl") if t0 != t1 else None
    if renamed is None:
        renamed = path.with_name(f"{first}-{last}_{t0[:-2]}00Z_{t1}.jsonl")
    path.rename(renamed)
    return renamed


def _forge_the_manifest(archive: Archive) -> Path:
    path = archive.directory / "archive.json"
    manifest = json.loads(path.read_text())
    manifest["slot"] = "another_slot"
    path.write_text(json.dumps(manifest))
    return path


def _insert_a_gap(archive: Archive) -> Path:
    """A gap record planted by whoever can write the file system: it names a stretch after the
    first segment and carries a made-up prev and MAC (the key is not theirs)."""
    after = archive.segments()[0].last_end_lsn
    path = archive.directory / f"gap_{after:016X}-{after + 1:016X}.json"
    body = {"after_end_lsn": after, "resume_lsn": after + 1, "reason": "planted"}
    path.write_text(json.dumps({**body, "prev": "0" * 64, "mac": "1" * 64}))
    return path


DAMAGE = {
    "planted gap record": (_insert_a_gap, "does not verify with the archive's key"),
    "truncated": (_truncate, "last line is not a seal"),
    "changed byte": (_change_a_byte, "does not match its seal"),
    "re-sealed without the key": (
        _reseal_without_the_key,
        "does not verify with the archive's key",
    ),
    "middle segment removed": (_remove_a_middle_segment, "does not follow the record before it"),
    "renamed": (_rename, "does not verify with the archive's key"),
    "manifest changed": (_forge_the_manifest, "MAC does not verify"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.control("SI-7")
def test_verify_names_the_first_bad_file_after_each_damage(
    damage: str, db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "archive"
    archive = _archive(db, directory)
    assert _verify(directory, capsys)[0] == 0  # intact before the damage (the twin)
    make, reason = DAMAGE[damage]
    bad = make(archive)
    code, out = _verify(directory, capsys)
    assert code == 1
    assert out.startswith("archive damaged: ") and out.count("\n") == 1
    assert bad.name in out and reason in out


def test_a_segment_from_another_archive_does_not_verify(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same server, same slot, same name: only the key differs (another archive directory)."""
    first = _archive(db, tmp_path / "one", transactions=2)
    other = tmp_path / "two"
    other.mkdir()
    shutil.copy2(first.directory / "archive.json", other / "archive.json")
    for segment in first.segments():
        shutil.copy2(segment.path, other / segment.path.name)
    # The copy carries the first archive's manifest, so it verifies with the first key only.
    shutil.copy2(key_file(first.directory), key_file(other))
    assert _verify(other, capsys)[0] == 0
    key_file(other).write_bytes(b"\x01" * 32)
    code, out = _verify(other, capsys)
    assert code == 1 and "archive.json" in out


@pytest.mark.parametrize("command", ["list", "show"])
def test_readers_of_a_truncated_archive_exit_2_with_one_line(
    command: str, db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "archive"
    archive = _archive(db, directory)
    argv = ["txlog", command, "--dir", str(directory)]
    if command == "show":
        argv += ["--table", "ledger"]
    assert main(argv) == 0  # the twin: the intact archive reads
    capsys.readouterr()
    bad = _truncate(archive)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert bad.name in err and "last line is not a seal" in err


def test_show_without_the_key_says_the_result_is_not_verified(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the key a forged segment or prune anchor reads as well as a true one: the reader
    says so after its result; with the key (the twin) it says nothing of the kind."""
    directory = tmp_path / "archive"
    _archive(db, directory)
    argv = ["txlog", "show", "--dir", str(directory), "--table", "ledger", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 6
    assert captured.err.splitlines() == [
        "not verified against the archive's key (seals and links checked, authorship not): "
        "give --kms-key or --key-file to verify"
    ]
    assert main([*argv, "--key-file", str(key_file(directory))]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 6 and captured.err == ""


@pytest.mark.control("SI-7")
def test_the_archiver_refuses_to_extend_a_damaged_tail(db: Db, tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    archive = _archive(db, directory)
    tail = archive.segments()[-1].path
    tail.write_bytes(tail.read_bytes()[:-5])
    slot_before = db.confirmed_flush()
    db.sql("INSERT INTO ledger(note) VALUES ('after-damage')")
    with pytest.raises(IntegrityError, match=tail.name):
        db.archiver(directory, idle_seconds=0.3).run()
    assert db.confirmed_flush() == slot_before  # the slot was not touched
    assert len(Archive(directory).segments()) == len(archive.segments())


def test_the_archiver_checks_its_tail_without_a_copy_in_tmp(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tail is checked before every run; the Lambda's /tmp (512 MB) must never bound the
    size of a segment the archiver can extend. Here every private copy would go to a /tmp that
    does not exist: the archiver still runs, while a reader that copies (verify) cannot."""
    directory = tmp_path / "archive"
    _archive(db, directory)
    monkeypatch.setattr("govdr.txlog.runtime.archive._SPOOL_MEMORY", 1)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "no-tmp"))
    db.sql("INSERT INTO ledger(note) VALUES ('after-check')")
    before = len(Archive(directory).segments())
    db.archiver(directory, idle_seconds=0.3).run()
    assert len(Archive(directory).segments()) == before + 1
    # the twin: a check that kept a copy would have needed the missing /tmp
    with pytest.raises(FileNotFoundError):
        Archive(directory).verify(archive_key(directory))


def test_the_archiver_refuses_an_archive_with_a_foreign_key(db: Db, tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    _archive(db, directory, transactions=2)
    key_file(directory).write_bytes(b"\x02" * 32)
    with pytest.raises(IntegrityError, match=r"archive\.json: its MAC does not verify"):
        db.archiver(directory, idle_seconds=0.3).run()


def _target(postgres: Postgres, db: Db) -> str:
    name = f"{db.name}_target"
    postgres.psql(f"CREATE DATABASE {name}")
    postgres.psql("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text)", name)
    return name


def _notes(postgres: Postgres, name: str) -> list[str]:
    return postgres.psql("SELECT note FROM ledger ORDER BY id", name).split()


@pytest.mark.control("SI-7")
def test_replay_applies_nothing_from_a_forged_segment(
    postgres: Postgres, db: Db, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    archive = _archive(db, directory)
    bad = _reseal_without_the_key(archive)
    target = _target(postgres, db)
    try:
        conn = psycopg2.connect(postgres.dsn(target))
        try:
            with pytest.raises(IntegrityError, match=bad.name):
                replay(archive, conn, Window(), key=archive_key(directory))
        finally:
            conn.close()
        applied = _notes(postgres, target)
        assert applied == ["row-0", "row-1"]  # the first segment only; nothing forged
    finally:
        postgres.psql(f"DROP DATABASE {target}")


def test_replay_stops_at_a_recorded_gap_with_what_is_before_it_applied(
    postgres: Postgres, db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "archive"
    _archive(db, directory, transactions=2)
    db.wait_until_slots_inactive()
    db.sql(f"SELECT pg_drop_replication_slot('{SLOT}')")
    db.sql("INSERT INTO ledger(note) VALUES ('lost')")
    stats = db.archiver(directory, idle_seconds=0.3).run()  # recreates the slot: a gap
    assert stats.gaps == 1
    db.sql("INSERT INTO ledger(note) VALUES ('after-gap')")
    db.archiver(directory, idle_seconds=0.3).run()
    archive = Archive(directory)
    assert archive.verify(archive_key(directory)).gaps  # the gap is sealed in the chain
    target = _target(postgres, db)
    try:
        conn = psycopg2.connect(postgres.dsn(target))
        try:
            with pytest.raises(ReplayGap, match="Replay applied everything before the gap"):
                replay(archive, conn, Window(), key=archive_key(directory))
        finally:
            conn.close()
        assert _notes(postgres, target) == ["row-0", "row-1"]
        # Sequences move past what was applied even though replay stopped.
        postgres.psql("INSERT INTO ledger(note) VALUES ('app')", target)
        # The CLI says so in one line and exits 2.
        code = main(
            [
                "txlog",
                "replay",
                "--dir",
                str(directory),
                "--key-file",
                str(key_file(directory)),
                "--target-dsn",
                f"{postgres.dsn(target)} sslmode=disable",
                "--start-lsn",
                "0/0",
                "--until",
                "2999-01-01T00:00:00+00:00",
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and "gap" in err and "Traceback" not in err
    finally:
        postgres.psql(f"DROP DATABASE {target}")


def test_replay_of_a_window_before_the_gap_is_not_refused(
    postgres: Postgres, db: Db, tmp_path: Path
) -> None:
    """The twin: a gap after --until does not stop the replay of what is before it."""
    directory = tmp_path / "archive"
    _archive(db, directory, transactions=2)
    archive = Archive(directory)
    until = archive.segments()[-1].last_commit
    db.wait_until_slots_inactive()
    db.sql(f"SELECT pg_drop_replication_slot('{SLOT}')")
    db.archiver(directory, idle_seconds=0.3).run()
    assert Archive(directory).gaps()
    target = _target(postgres, db)
    try:
        conn = psycopg2.connect(postgres.dsn(target))
        try:
            result = replay(archive, conn, Window(until=until), key=archive_key(directory))
        finally:
            conn.close()
        assert result.applied == 2
    finally:
        postgres.psql(f"DROP DATABASE {target}")


IDENTITY: dict[str, Any] = {
    "system_identifier": "7300000000000000001",
    "timeline": 1,
    "database": "citizens",
    "slot": "govdr_txlog_prod",
}


@mock_aws
def test_kms_keyring_binds_the_key_to_the_archive_identity() -> None:
    kms = boto3.client("kms", region_name=REGION)
    key_id = kms.create_key()["KeyMetadata"]["Arn"]
    ring = KmsKeyring(kms, key_id)
    context = encryption_context(IDENTITY)
    key, record = ring.create(context)
    assert record["kms_key_arn"] == key_id and "Plaintext" not in json.dumps(record)
    opened = ring.open(record, context)
    assert opened.mac("segment", "x") == key.mac("segment", "x")
    # Another identity (another slot) cannot open it: the encryption context differs.
    with pytest.raises(KeyUnavailable, match="kms:Decrypt"):
        ring.open(record, encryption_context({**IDENTITY, "slot": "other"}))
    # A keyring configured with another CMK refuses the record.
    other = KmsKeyring(kms, kms.create_key()["KeyMetadata"]["Arn"])
    with pytest.raises(KeyUnavailable):
        other.open(record, context)


@mock_aws
def test_kms_keyring_refuses_an_archive_keyed_with_a_file() -> None:
    kms = boto3.client("kms", region_name=REGION)
    ring = KmsKeyring(kms, kms.create_key()["KeyMetadata"]["Arn"])
    with pytest.raises(KeyUnavailable, match="local key file"):
        ring.open({"key_file": "k"}, encryption_context(IDENTITY))


def test_an_archive_key_never_shows_its_bytes() -> None:
    key = ArchiveKey(b"\x07" * 32)
    assert "07" not in repr(key) and "hidden" in repr(key)
    with pytest.raises(ValueError, match="32 bytes"):
        ArchiveKey(b"short")


def test_writing_needs_an_open_chain(tmp_path: Path) -> None:
    from govdr.txlog.runtime.archive import Bound

    with pytest.raises(ArchiveError, match="chain is not open"):
        Archive(tmp_path).write_segment(
            [b'{"xid":1,"end_lsn":1,}\n'],
            Bound(1, "2026-01-01 00:00:00+00"),
            Bound(1, "2026-01-01 00:00:00+00"),
        )
