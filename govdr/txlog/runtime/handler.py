"""Lambda entry point of the transaction-log archiver (one-minute schedule).

Reads the replication user's credentials from Secrets Manager, connects over verified TLS
(``govdr/lambda_support/pg_tls.py``: verify-full against the pinned RDS roots, SCRAM required),
drains the slot into the EFS access point mounted at ``ARCHIVE_DIR`` until the time budget ends, and
publishes the run as CloudWatch metrics in embedded metric format (Powertools):
``ArchiveLagSeconds``, ``TransactionsArchived``, ``BytesArchived``, ``SegmentsWritten``,
``ArchiveGaps``, ``SlotInvalidations``, ``SlotSafeWalBytes`` and ``SlotRetainedWalBytes`` (the
slot's WAL health from pg_replication_slots), ``RecordsPruned``, ``BytesPruned``,
``PruneFailures`` and ``ArchiveSegments`` (retention: segments older than ``RETENTION_DAYS``
are pruned). A refused archive (another server's, a file that is not a segment, an end beyond
the server's WAL) fails the invocation with one error line and publishes no lag, so the lag
alarm (missing data breaches) fires.

No concurrency is reserved (a fresh account or opt-in region may have only the unreserved
minimum of 10): the logical slot admits one reader, and a run that finds it held by the
previous one exits quietly without metrics, leaving them to the run that reads.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from govdr.lambda_support.pg_tls import TlsSetupError, tls_from_env
from govdr.txlog import contract
from govdr.txlog.runtime.archive import Archive, ArchiveError, parse_commit_time
from govdr.txlog.runtime.archiver import SLOT_BUSY, Archiver, RunStats
from govdr.txlog.runtime.integrity import Keyring, KmsKeyring

NAMESPACE = contract.NAMESPACE
SERVICE = contract.SERVICE  # Powertools adds it as the ``service`` dimension
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# Stop this long before the Lambda timeout: the last batch is flushed and acknowledged.
SAFETY_MARGIN_SECONDS = 15.0


@dataclass(frozen=True)
class Settings:
    secret_arn: str
    archive_dir: str
    slot: str
    environment: str
    # libpq keywords of the TLS session (govdr.lambda_support.pg_tls.verified_tls).
    tls: Mapping[str, str]
    # The KMS key the archive's seals are keyed with (govdr/txlog/runtime/integrity.py).
    integrity_key: str = ""
    # The database whose changes are archived (a logical slot belongs to one database); the
    # secret's own dbname is only a fallback.
    dbname: str | None = None
    # Days of archive kept: older segments are pruned at the end of each run (none if unset).
    retention_days: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        required = contract.REQUIRED_ENV
        missing = [k for k in required if not env.get(k)]
        if missing:
            raise ValueError(f"environment variables not set: {', '.join(missing)}")
        return cls(
            secret_arn=env[contract.ENV_SECRET_ARN],
            archive_dir=env[contract.ENV_ARCHIVE_DIR],
            slot=env[contract.ENV_SLOT_NAME],
            environment=env.get(contract.ENV_ENVIRONMENT_SUFFIX, "unknown"),
            tls=tls_from_env(env),
            dbname=env.get(contract.ENV_DB_NAME) or None,
            integrity_key=env[contract.ENV_INTEGRITY_KEY_ARN],
            retention_days=_retention_days(env.get(contract.ENV_RETENTION_DAYS, "")),
        )


def _retention_days(text: str) -> int | None:
    if not text:
        return None
    try:
        return contract.retention_days(text)
    except ValueError as exc:
        raise ValueError(f"{contract.ENV_RETENTION_DAYS}: {exc}") from None


def dsn_from_secret(secret: Mapping[str, Any], tls: Mapping[str, str]) -> str:
    """A libpq DSN from an RDS secret (host, port, username, password, dbname) with the TLS
    keywords ``tls`` (govdr.lambda_support.pg_tls.verified_tls)."""
    import psycopg2.extensions

    dsn: str = psycopg2.extensions.make_dsn(
        host=secret["host"],
        port=int(secret.get("port", 5432)),
        user=secret["username"],
        password=secret["password"],
        dbname=secret.get("dbname") or "postgres",
        connect_timeout=10,
        application_name="govdr-txlog-archiver",
        **tls,
    )
    return dsn


def newest_commit(connection: Any) -> datetime | None:
    """Commit time of the newest transaction on the database (track_commit_timestamp)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT timestamp FROM pg_last_committed_xact()")
        row = cursor.fetchone()
    return row[0] if row and row[0] is not None else None


def archive_lag_seconds(db_newest: datetime | None, archived_newest: datetime | None) -> float:
    """Seconds the archive is behind the database; 0 when it holds the newest commit."""
    if db_newest is None:
        return 0.0
    if archived_newest is None:
        return max(0.0, (datetime.now(db_newest.tzinfo) - db_newest).total_seconds())
    return max(0.0, (db_newest - archived_newest).total_seconds())


def run_once(
    settings: Settings,
    secret: Mapping[str, Any],
    remaining_seconds: Callable[[], float],
    keyring: Keyring,
) -> tuple[RunStats, float]:
    """Drain within the time budget; return the run's figures and the archive lag."""
    import psycopg2
    import psycopg2.extras

    if settings.dbname:
        secret = {**secret, "dbname": settings.dbname}
    dsn = dsn_from_secret(secret, settings.tls)
    archive = Archive(Path(settings.archive_dir))
    archiver = Archiver(
        archive=archive,
        keyring=keyring,
        slot=settings.slot,
        connect_sql=lambda: psycopg2.connect(dsn),
        connect_replication=lambda: psycopg2.connect(
            dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
        ),
        idle_seconds=2.0,
        # A slot the server invalidated is replaced and the gap recorded (ArchiveGaps alarm):
        # the archive goes on from the new slot instead of stopping until someone acts.
        replace_lost_slot=True,
        retention=(
            timedelta(days=settings.retention_days) if settings.retention_days is not None else None
        ),
        deadline=time.monotonic() + max(0.0, remaining_seconds() - SAFETY_MARGIN_SECONDS),
    )
    stats = archiver.run()
    if stats.stopped_by == SLOT_BUSY:
        return stats, 0.0
    if stats.stopped_by == "idle":
        # The server had nothing more to send: everything the slot can deliver is archived.
        # Commit times alone would say otherwise on an idle database: its newest commit may
        # predate the slot, or be in another database of the cluster (pg_last_committed_xact
        # is cluster-wide), and never be archived here; the lag would then grow forever.
        return stats, 0.0
    segments = archive.segments()
    archived_newest = segments[-1].last_commit if segments else None
    if stats.last_commit_time:
        archived_newest = parse_commit_time(stats.last_commit_time)
    connection = psycopg2.connect(dsn)
    try:
        lag = archive_lag_seconds(newest_commit(connection), archived_newest)
    finally:
        connection.close()
    return stats, lag


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One run: drain the slot within the invocation's time, publish its metrics (at return,
    by ``log_metrics``), and return its summary."""
    import boto3

    # A refused setting: one line in the log; the invocation fails (the Errors metric)
    # without a stack trace of ours.
    try:
        settings = Settings.from_env(os.environ)
    except TlsSetupError as exc:
        logger.error("TLS setup failed: %s", exc)
        raise TlsSetupError(str(exc)) from None
    except ValueError as exc:
        logger.error("the function's configuration is refused: %s", exc)
        raise ValueError(str(exc)) from None
    metrics.add_dimension(name=contract.ENVIRONMENT_DIMENSION, value=settings.environment)
    # Read at every run, so a rotation's new AWSCURRENT is used from the next run on
    # (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html).
    secret = json.loads(
        boto3.client("secretsmanager").get_secret_value(
            SecretId=settings.secret_arn, VersionStage="AWSCURRENT"
        )["SecretString"]
    )
    try:
        stats, lag = run_once(
            settings,
            secret,
            lambda: context.get_remaining_time_in_millis() / 1000.0,
            KmsKeyring(boto3.client("kms"), settings.integrity_key),
        )
    except ArchiveError as exc:
        # No lag data point: the lag alarm treats missing data as breaching, and the failed
        # invocation counts in the function's Errors metric.
        logger.error("archive refused: %s", exc)
        raise
    if stats.stopped_by == SLOT_BUSY:
        # Not an error and not a data point: the run that holds the slot reports the lag.
        logger.info("slot held by another run; exiting", extra={"slot": settings.slot})
        return {"stopped_by": stats.stopped_by}
    if stats.slot_invalidations:
        logger.error(
            "replication slot invalidated by the server (max_slot_wal_keep_size): replaced by "
            "a new slot; the changes in between are not in the archive (docs/runbook.md, "
            "'Replication slot invalidated')",
            extra={"slot": settings.slot},
        )
    if stats.gaps:
        logger.error(
            "archive gap recorded: changes before the slot's start are not in the archive",
            extra={"slot": settings.slot},
        )
    metrics.add_metric(name=contract.ARCHIVE_LAG_SECONDS, unit=MetricUnit.Seconds, value=lag)
    metrics.add_metric(
        name=contract.TRANSACTIONS_ARCHIVED, unit=MetricUnit.Count, value=stats.transactions
    )
    metrics.add_metric(name=contract.BYTES_ARCHIVED, unit=MetricUnit.Bytes, value=stats.bytes)
    metrics.add_metric(name=contract.SEGMENTS_WRITTEN, unit=MetricUnit.Count, value=stats.segments)
    metrics.add_metric(name=contract.ARCHIVE_GAPS, unit=MetricUnit.Count, value=stats.gaps)
    metrics.add_metric(
        name=contract.SLOT_INVALIDATIONS, unit=MetricUnit.Count, value=stats.slot_invalidations
    )
    # The archive's retention: what this run pruned, and how many segments are kept.
    metrics.add_metric(
        name=contract.RECORDS_PRUNED, unit=MetricUnit.Count, value=stats.pruned_records
    )
    metrics.add_metric(name=contract.BYTES_PRUNED, unit=MetricUnit.Bytes, value=stats.pruned_bytes)
    metrics.add_metric(
        name=contract.PRUNE_FAILURES, unit=MetricUnit.Count, value=stats.prune_failures
    )
    if stats.archive_segments is not None:
        metrics.add_metric(
            name=contract.ARCHIVE_SEGMENTS, unit=MetricUnit.Count, value=stats.archive_segments
        )
    # The slot's WAL health when the run started (govdr status, the dashboard).
    if stats.slot_safe_wal_bytes is not None:
        metrics.add_metric(
            name=contract.SLOT_SAFE_WAL_BYTES,
            unit=MetricUnit.Bytes,
            value=stats.slot_safe_wal_bytes,
        )
    if stats.slot_retained_wal_bytes is not None:
        metrics.add_metric(
            name=contract.SLOT_RETAINED_WAL_BYTES,
            unit=MetricUnit.Bytes,
            value=stats.slot_retained_wal_bytes,
        )
    summary = {
        "transactions": stats.transactions,
        "bytes": stats.bytes,
        "segments": stats.segments,
        "skipped_redelivered": stats.skipped,
        "reconnects": stats.reconnects,
        "gaps": stats.gaps,
        "slot_invalidations": stats.slot_invalidations,
        "pruned_records": stats.pruned_records,
        "pruned_bytes": stats.pruned_bytes,
        "archive_segments": stats.archive_segments,
        "slot_wal_status": stats.slot_wal_status,
        "slot_safe_wal_bytes": stats.slot_safe_wal_bytes,
        "slot_retained_wal_bytes": stats.slot_retained_wal_bytes,
        "lag_seconds": round(lag, 3),
        "stopped_by": stats.stopped_by,
    }
    logger.info("archive run", extra=summary)
    return summary
