"""Archive keys for tests: a local key file beside (never inside) each archive directory.

The HMAC seals are the real ones; only the key's source differs from the deployed archiver,
which opens its key with AWS KMS (tests/runtime/test_txlog_integrity.py covers that with moto).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govdr.txlog.runtime.archive import Archive
from govdr.txlog.runtime.integrity import ArchiveKey, FileKeyring, encryption_context

IDENTITY = {"system_identifier": "7000000000000000001", "timeline": 1, "database": "d", "slot": "s"}


def key_file(directory: Path) -> Path:
    return directory.with_name(f"{directory.name}.archive-key")


def keyring(directory: Path) -> FileKeyring:
    return FileKeyring(key_file(directory))


def archive_key(directory: Path) -> ArchiveKey:
    """The key of the archive in ``directory`` (the one its archiver created)."""
    return keyring(directory).open({"key_file": key_file(directory).name}, {})


def writable_archive(
    directory: Path, identity: dict[str, Any] | None = None, archive: Archive | None = None
) -> Archive:
    """An archive in ``directory`` ready to be extended by hand: its manifest is created
    (``identity``, default a made-up server) unless present, and its chain opened."""
    archive = archive or Archive(directory)
    ring = keyring(directory)
    manifest = archive.manifest()
    if manifest is None:
        ident = identity or IDENTITY
        key, record = ring.create(encryption_context(ident))
        archive.create_manifest(ident, key, record)
    else:
        archive.open_chain(ring.open(manifest["key"], encryption_context(manifest)))
    return archive
