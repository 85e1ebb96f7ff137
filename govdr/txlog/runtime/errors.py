"""The archive's errors: each message says what is wrong and how to fix it."""

from __future__ import annotations


class ArchiveError(RuntimeError):
    """The archive cannot be read or written; the message says what to fix."""


class IntegrityError(ArchiveError):
    """A record of the archive fails its integrity check; the message names the file."""


class KeyUnavailable(ArchiveError):
    """The archive's key cannot be opened (KMS refused or is unreachable); the message says
    which key, which permission and which encryption context are needed."""
