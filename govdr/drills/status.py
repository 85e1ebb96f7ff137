"""``govdr status``: the recovery posture now, against the objectives.

Targets come from the stack outputs (``cfn-outputs/flat-outputs.json`` or the stack itself),
never from names written into the code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from govdr.config import RPO_OBJECTIVE_SECONDS
from govdr.drills.failover import describe_instance, failover_events
from govdr.tools.outputs import OutputsError, stack_outputs
from govdr.txlog import contract as txlog

REQUIRED_OUTPUTS = (
    "EnvironmentSuffix",
    "DatabaseInstanceIdentifier",
    "DatabaseSecretArn",
    "AlarmTopicArn",
)
EVENT_LOOKBACK = timedelta(days=14)  # RDS keeps events for 14 days
# The platform's alarms, named ``<short>-<suffix>`` (govdr.stacks.monitoring.alarm_specs; a
# unit test keeps this list equal to it). Matching the whole name keeps the alarms of
# environment ``pr-dev`` out of environment ``dev``.
PLATFORM_ALARMS = (
    "rds-cpu",
    "rds-free-storage",
    "rds-freeable-memory",
    "rds-connections",
    "rds-read-latency",
    "rds-write-latency",
    "rds-disk-queue-depth",
    "rds-txlog-disk-usage",
    "rds-replication-slot-lag",
    "rds-logical-slot-lag",
    "efs-io-limit",
    "txlog-archive-lag",
    "txlog-archive-gaps",
    "rpo",
)


def stack_name_for(suffix: str) -> str:
    """The root stack of an environment, e.g. ``TapStackdev`` (govdr.config.DrConfig)."""
    return f"TapStack{suffix}"


def platform_alarms_in_alarm(cloudwatch: Any, suffix: str) -> list[str]:
    """Names of this environment's platform alarms now in ALARM, over every result page.

    DescribeAlarms returns at most 100 alarms per call and a NextToken for the rest:
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html
    """
    wanted = {f"{short}-{suffix}" for short in PLATFORM_ALARMS}
    names: set[str] = set()
    for page in cloudwatch.get_paginator("describe_alarms").paginate(StateValue="ALARM"):
        names.update(a["AlarmName"] for a in page.get("MetricAlarms", []))
        names.update(a["AlarmName"] for a in page.get("CompositeAlarms", []))
    return sorted(names & wanted)


def load_outputs(
    path: Path, stack_name: str | None, clients: Callable[[str], Any]
) -> dict[str, str]:
    """The outputs of ``stack_name`` when it is given, else the flat outputs file.

    An explicit stack wins; when the file exists too, it must describe the same environment,
    or the command refuses (the file may hold another environment's outputs, e.g. prod's).
    """
    file_outputs: dict[str, str] | None = None
    if path.exists():
        try:
            file_outputs = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, AttributeError):
            raise OutputsError(
                f"{path} is not a flat JSON object of outputs; regenerate it with `make outputs`"
            ) from None
    if stack_name:
        if file_outputs is not None:
            file_suffix = file_outputs.get("EnvironmentSuffix", "")
            if stack_name_for(file_suffix) != stack_name:
                raise OutputsError(
                    f"--stack {stack_name} does not match {path} (EnvironmentSuffix "
                    f"{file_suffix or '(none)'}, stack {stack_name_for(file_suffix)}); pass "
                    "the stack the file describes, or --outputs with the file of "
                    f"{stack_name} (or remove {path})"
                )
        outputs = stack_outputs(clients("cloudformation"), stack_name)
        suffix = outputs.get("EnvironmentSuffix", "")
        if suffix and stack_name_for(suffix) != stack_name:
            raise OutputsError(
                f"stack {stack_name} reports EnvironmentSuffix {suffix} (stack "
                f"{stack_name_for(suffix)}); pass --stack {stack_name_for(suffix)}"
            )
    elif file_outputs is not None:
        outputs = file_outputs
    else:
        raise OutputsError(
            f"{path} does not exist and no --stack was given; run `make outputs` (or `make "
            "deploy-local KEEP=1`) first, or pass --stack TapStack<suffix>"
        )
    missing = [k for k in REQUIRED_OUTPUTS if not outputs.get(k)]
    if missing:
        raise OutputsError(
            f"outputs lack {', '.join(missing)}; they come from an older stack: redeploy it"
        )
    return outputs


def _archiver_metric(
    cloudwatch: Any,
    suffix: str,
    now: datetime,
    metric: str,
    statistic: str,
    *,
    window: timedelta = timedelta(minutes=15),
    period: int = 60,
) -> list[dict[str, Any]]:
    """Data points of one of the archiver's metrics (handler.py publishes them every run)."""
    points: list[dict[str, Any]] = cloudwatch.get_metric_statistics(
        Namespace=txlog.NAMESPACE,
        MetricName=metric,
        Dimensions=[
            {"Name": "service", "Value": txlog.SERVICE},
            {"Name": "Environment", "Value": suffix},
        ],
        StartTime=now - window,
        EndTime=now,
        Period=period,
        Statistics=[statistic],
    )["Datapoints"]
    return points


def _newest(points: list[dict[str, Any]], statistic: str) -> float | None:
    if not points:
        return None
    return float(max(points, key=lambda d: d["Timestamp"])[statistic])


def _archive_lag(cloudwatch: Any, suffix: str, now: datetime) -> float | None:
    points = _archiver_metric(cloudwatch, suffix, now, txlog.ARCHIVE_LAG_SECONDS, "Maximum")
    return _newest(points, "Maximum")


# How far back `govdr status` looks for slot invalidations (each one is a gap in the archive).
INVALIDATION_LOOKBACK = timedelta(hours=24)


def slot_health(
    cloudwatch: Any, suffix: str, now: datetime, outputs: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The archiver's slot against its WAL cap (``TxlogSlotWalKeepMiB``): WAL kept, WAL left
    before PostgreSQL invalidates the slot, invalidations in the last 24 hours; and breaches."""
    raw = outputs["TxlogSlotWalKeepMiB"]
    if not raw.isdigit() or int(raw) == 0:
        raise OutputsError(
            f"output TxlogSlotWalKeepMiB is {raw!r}, not a whole number of MiB above 0; "
            "regenerate the outputs with `make outputs` (or pass --stack)"
        )
    cap = int(raw) * 1024 * 1024
    safe = _newest(
        _archiver_metric(cloudwatch, suffix, now, txlog.SLOT_SAFE_WAL_BYTES, "Minimum"), "Minimum"
    )
    retained = _newest(
        _archiver_metric(cloudwatch, suffix, now, txlog.SLOT_RETAINED_WAL_BYTES, "Maximum"),
        "Maximum",
    )
    invalidations = sum(
        float(p["Sum"])
        for p in _archiver_metric(
            cloudwatch,
            suffix,
            now,
            txlog.SLOT_INVALIDATIONS,
            "Sum",
            window=INVALIDATION_LOOKBACK,
            period=3600,
        )
    )
    breaches = []
    if invalidations:
        health = "invalidated"
        breaches.append(
            f"replication slot invalidated {invalidations:.0f} time(s) in the last 24 h: the "
            "archive has a gap (govdr txlog verify lists it; docs/runbook.md, 'Replication slot "
            "invalidated')"
        )
    elif safe is None:
        health = "unknown"
    elif safe < cap / 2:
        health = "near the cap"
        breaches.append(
            f"replication slot has {safe / 2**20:.0f} MiB of WAL left before PostgreSQL "
            f"invalidates it (cap {cap / 2**20:.0f} MiB): the archive is behind"
        )
    else:
        health = "ok"
    doc = {
        "name": outputs.get("TxlogSlotName"),
        "health": health,
        "wal_keep_limit_bytes": cap,
        "retained_wal_bytes": retained,
        "safe_wal_bytes": safe,
        "invalidations_24h": int(invalidations),
    }
    return doc, breaches


def gather(
    clients: Callable[[str], Any],
    outputs: dict[str, str],
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """The status document; ``breaches`` lists every objective at risk (empty when fine)."""
    rds = clients("rds")
    instance_id = outputs["DatabaseInstanceIdentifier"]
    suffix = outputs["EnvironmentSuffix"]
    at = now()
    db = describe_instance(rds, instance_id)
    restorable = db.get("LatestRestorableTime")
    rpo = None if restorable is None else max(0.0, round((at - restorable).total_seconds(), 1))
    events = failover_events(rds, instance_id, at - EVENT_LOOKBACK)
    secret = clients("secretsmanager").describe_secret(SecretId=outputs["DatabaseSecretArn"])
    last_rotated = secret.get("LastRotatedDate")
    next_rotation = secret.get("NextRotationDate")
    # The archiver's own login rotates on the same 30-day cycle (older stacks lack it).
    replication = (
        clients("secretsmanager").describe_secret(SecretId=outputs["ReplicationSecretArn"])
        if outputs.get("ReplicationSecretArn")
        else None
    )
    in_alarm = platform_alarms_in_alarm(clients("cloudwatch"), suffix)
    lag = _archive_lag(clients("cloudwatch"), suffix, at)

    breaches = []
    if rpo is None:
        breaches.append("RPO unknown: the instance reports no latest restorable time")
    elif rpo >= RPO_OBJECTIVE_SECONDS:
        breaches.append(f"RPO {rpo:.0f} s >= objective {RPO_OBJECTIVE_SECONDS} s")
    if not db.get("MultiAZ"):
        breaches.append("not Multi-AZ: an AZ loss means a restore, not a failover (RTO)")
    if next_rotation is not None and next_rotation < at:
        breaches.append(f"secret rotation overdue since {next_rotation.isoformat()}")
    if lag is not None and lag >= RPO_OBJECTIVE_SECONDS:
        breaches.append(f"transaction-log archive {lag:.0f} s behind (>= the RPO objective)")
    if not secret.get("RotationEnabled"):
        breaches.append("secret rotation is disabled")
    if replication is not None:
        due = replication.get("NextRotationDate")
        if not replication.get("RotationEnabled"):
            breaches.append("archiver secret rotation is disabled")
        elif due is not None and due < at:
            breaches.append(f"archiver secret rotation overdue since {due.isoformat()}")
    slot = None
    if outputs.get("TxlogSlotWalKeepMiB"):  # older stacks lack it
        slot, slot_breaches = slot_health(clients("cloudwatch"), suffix, at, outputs)
        breaches.extend(slot_breaches)
    return {
        "environment": suffix,
        "checked_at": at.isoformat(),
        "instance": instance_id,
        "status": db.get("DBInstanceStatus"),
        "rpo_seconds": rpo,
        "rpo_objective_seconds": RPO_OBJECTIVE_SECONDS,
        "latest_restorable_time": None if restorable is None else restorable.isoformat(),
        "multi_az": bool(db.get("MultiAZ")),
        "primary_az": db.get("AvailabilityZone"),
        "standby_az": db.get("SecondaryAvailabilityZone"),
        "last_failover_event": events[-1] if events else None,
        "secret_last_rotated": None if last_rotated is None else last_rotated.isoformat(),
        "secret_next_rotation": None if next_rotation is None else next_rotation.isoformat(),
        "archiver_secret_next_rotation": (
            None
            if replication is None or replication.get("NextRotationDate") is None
            else replication["NextRotationDate"].isoformat()
        ),
        "archive_lag_seconds": lag,
        "replication_slot": slot,
        "alarms_in_alarm": in_alarm,
        "breaches": breaches,
    }
