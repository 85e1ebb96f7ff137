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
from runtime.txlog_archiver.handler import NAMESPACE as ARCHIVE_NAMESPACE
from runtime.txlog_archiver.handler import SERVICE as ARCHIVE_SERVICE

REQUIRED_OUTPUTS = (
    "EnvironmentSuffix",
    "DatabaseInstanceIdentifier",
    "DatabaseSecretArn",
    "AlarmTopicArn",
)
EVENT_LOOKBACK = timedelta(days=14)  # RDS keeps events for 14 days


def load_outputs(
    path: Path, stack_name: str | None, clients: Callable[[str], Any]
) -> dict[str, str]:
    """The flat outputs file when it exists, else the outputs of ``stack_name``."""
    if path.exists():
        try:
            outputs = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, AttributeError):
            raise OutputsError(
                f"{path} is not a flat JSON object of outputs; regenerate it with `make outputs`"
            ) from None
    elif stack_name:
        outputs = stack_outputs(clients("cloudformation"), stack_name)
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


def _archive_lag(cloudwatch: Any, suffix: str, now: datetime) -> float | None:
    data = cloudwatch.get_metric_statistics(
        Namespace=ARCHIVE_NAMESPACE,
        MetricName="ArchiveLagSeconds",
        Dimensions=[
            {"Name": "service", "Value": ARCHIVE_SERVICE},
            {"Name": "Environment", "Value": suffix},
        ],
        StartTime=now - timedelta(minutes=15),
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    if not data:
        return None
    newest = max(data, key=lambda d: d["Timestamp"])
    return float(newest["Maximum"])


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
    alarms = clients("cloudwatch").describe_alarms(StateValue="ALARM")["MetricAlarms"]
    in_alarm = sorted(a["AlarmName"] for a in alarms if a["AlarmName"].endswith(f"-{suffix}"))
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
        "alarms_in_alarm": in_alarm,
        "breaches": breaches,
    }
