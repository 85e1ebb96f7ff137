"""What the transaction-log archiver shares with its infrastructure and its operators.

The stacks (its environment and alarms), the handler (what it reads and publishes),
``govdr status`` and the control matrix import these names from here; this module imports
nothing, so the stacks need not import the handler.
"""

from __future__ import annotations

# CloudWatch metrics, embedded metric format (Powertools adds SERVICE as the ``service``
# dimension; the handler adds ENVIRONMENT_DIMENSION).
NAMESPACE = "govdr/txlog"
BOOTSTRAP_SERVICE = "txlog-bootstrap"
SERVICE = "txlog-archiver"
ENVIRONMENT_DIMENSION = "Environment"

ARCHIVE_LAG_SECONDS = "ArchiveLagSeconds"
TRANSACTIONS_ARCHIVED = "TransactionsArchived"
BYTES_ARCHIVED = "BytesArchived"
SEGMENTS_WRITTEN = "SegmentsWritten"
ARCHIVE_GAPS = "ArchiveGaps"
SLOT_INVALIDATIONS = "SlotInvalidations"
SLOT_SAFE_WAL_BYTES = "SlotSafeWalBytes"
SLOT_RETAINED_WAL_BYTES = "SlotRetainedWalBytes"
RECORDS_PRUNED = "RecordsPruned"
BYTES_PRUNED = "BytesPruned"
PRUNE_FAILURES = "PruneFailures"
ARCHIVE_SEGMENTS = "ArchiveSegments"

# The function's environment.
ENV_SECRET_ARN = "SECRET_ARN"  # noqa: S105 - the name of a variable holding an ARN
ENV_ARCHIVE_DIR = "ARCHIVE_DIR"
ENV_SLOT_NAME = "SLOT_NAME"
ENV_DB_NAME = "DB_NAME"
ENV_ENVIRONMENT_SUFFIX = "ENVIRONMENT_SUFFIX"
ENV_INTEGRITY_KEY_ARN = "INTEGRITY_KEY_ARN"
ENV_RETENTION_DAYS = "RETENTION_DAYS"
REQUIRED_ENV = (ENV_SECRET_ARN, ENV_ARCHIVE_DIR, ENV_SLOT_NAME, ENV_INTEGRITY_KEY_ARN)

# The longest retention of the archive (txlogRetentionDays, --retention-days, RETENTION_DAYS):
# ten years, the longest of the backups' retention the configuration allows.
MAX_RETENTION_DAYS = 3650


def retention_days(text: str) -> int:
    """Whole days from 1 to MAX_RETENTION_DAYS; ValueError says what is allowed."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_RETENTION_DAYS:
        raise ValueError(f"{text!r} is not a whole number of days from 1 to {MAX_RETENTION_DAYS}")
    return int(text)


# The bootstrap's environment: the one slot and the two secrets it may manage.
ENV_BOOTSTRAP_SLOT_NAME = "TXLOG_SLOT_NAME"
ENV_MASTER_SECRET_ARN = "MASTER_SECRET_ARN"  # noqa: S105 - a variable name, not a secret
ENV_REPLICATION_SECRET_ARN = "REPLICATION_SECRET_ARN"  # noqa: S105 - a variable name
BOOTSTRAP_ENV = (ENV_BOOTSTRAP_SLOT_NAME, ENV_MASTER_SECRET_ARN, ENV_REPLICATION_SECRET_ARN)

# The drills' database login (govdr drill failover), created by the bootstrap: IAM database
# authentication only.
DRILL_ROLE = "govdr_drill"
