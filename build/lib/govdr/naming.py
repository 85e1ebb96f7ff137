"""Physical names: ``{resource-type}-{environment-suffix}`` in one place."""

from __future__ import annotations

import re

_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def name(resource_type: str, suffix: str) -> str:
    """Return the physical name of a resource, e.g. ``name("rds", "dev") == "rds-dev"``."""
    if not _TYPE_RE.match(resource_type):
        raise ValueError(
            f"resource type {resource_type!r} must be lowercase words joined by single hyphens"
        )
    return f"{resource_type}-{suffix}"


def alias(resource_type: str, suffix: str) -> str:
    """Return a KMS alias name, e.g. ``alias("rds", "dev") == "alias/rds-dev"``."""
    return f"alias/{name(resource_type, suffix)}"


def slot_name(suffix: str) -> str:
    """The archive's logical replication slot, e.g. ``govdr_txlog_pr_12`` (PostgreSQL allows
    lowercase letters, digits and underscores only)."""
    return "govdr_txlog_" + suffix.replace("-", "_")
