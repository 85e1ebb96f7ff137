"""Restore drill: point-in-time restore into a new instance, verify it, measure, delete it.

The restored instance is named ``rds-<suffix>-restore-drill``, placed in the source's subnet
group and security groups, single-AZ, without deletion protection, and tagged
``govdr:drill=restore``; it is deleted (no final snapshot) at the end of the drill, also when
the verification fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from govdr.drills.failover import DrillError, describe_instance
from govdr.drills.probe import Clock, ProbeTimeout, Sleep, wait_for

POLL_SECONDS = 15.0
AVAILABLE_TIMEOUT_SECONDS = 3 * 3600.0
CANARY = "SELECT count(*) FROM pg_catalog.pg_class"
DRILL_TAG = {"Key": "govdr:drill", "Value": "restore"}


def drill_instance_id(suffix: str) -> str:
    return f"rds-{suffix}-restore-drill"


def plan(db: dict[str, Any], target: str) -> list[str]:
    return [
        f"would restore {db['DBInstanceIdentifier']} to its latest restorable time "
        f"({db.get('LatestRestorableTime')}) into a new instance {target}",
        f"  subnet group {db.get('DBSubnetGroup', {}).get('DBSubnetGroupName')}, security groups "
        + ", ".join(g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", [])),
        "would wait until it is available, connect over verified TLS (verify-full) with the "
        f"master secret and run the canary query ({CANARY})",
        f"would delete {target} (no final snapshot) and write the JSON report",
    ]


def _wait_status(
    rds: Any,
    instance_id: str,
    wanted: str,
    *,
    start: float,
    timeout: float,
    clock: Clock,
    sleep: Sleep,
    progress: Callable[[str], None],
) -> float:
    last, polls = "", 0
    while True:
        status = describe_instance(rds, instance_id).get("DBInstanceStatus", "")
        polls += 1
        # On every change of status, and once a minute while it stays the same.
        if status != last or polls % 4 == 0:
            progress(f"  {instance_id}: {status} ({clock() - start:.0f} s)")
            last = status
        if status == wanted:
            return clock()
        if status in ("failed", "incompatible-restore", "incompatible-parameters"):
            raise DrillError(f"{instance_id} became {status}; see its RDS events")
        if clock() - start >= timeout:
            raise DrillError(f"{instance_id} was not {wanted} within {timeout:.0f} s")
        sleep(POLL_SECONDS)


def _carries_drill_tag(rds: Any, instance_id: str) -> bool:
    """Whether the instance carries the tag this drill gives the instances it creates.

    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ListTagsForResource.html
    """
    arn = describe_instance(rds, instance_id)["DBInstanceArn"]
    tags = rds.list_tags_for_resource(ResourceName=arn).get("TagList", [])
    return any(
        (t.get("Key"), t.get("Value")) == (DRILL_TAG["Key"], DRILL_TAG["Value"]) for t in tags
    )


def _delete_drill_instance(
    rds: Any, target: str, report: dict[str, Any], progress: Callable[[str], None]
) -> None:
    """Delete the restored instance, but only when it carries the drill's own tag."""
    if not _carries_drill_tag(rds, target):
        report["deleted"] = False
        message = (
            f"{target} does not carry the tag {DRILL_TAG['Key']}={DRILL_TAG['Value']}, so this "
            "drill did not create it and left it alone; check who did before deleting it"
        )
        report["deletion"] = message
        progress(message)
        return
    rds.delete_db_instance(
        DBInstanceIdentifier=target, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
    )
    report["deleted"] = True
    progress(f"deletion of {target} requested")


def run_restore(
    rds: Any,
    instance_id: str,
    suffix: str,
    probe_for: Callable[[str, int], Callable[[], None]] | None,
    *,
    clock: Clock = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Sleep = time.sleep,
    progress: Callable[[str], None] = lambda _line: None,
    objective: float,
) -> dict[str, Any]:
    """Run the drill; ``probe_for(host, port)`` returns the verification probe, or ``None``
    when no database can be reached (the report then says the restore is unverified)."""
    db = describe_instance(rds, instance_id)
    target = drill_instance_id(suffix)
    try:
        describe_instance(rds, target)
    except DrillError:
        pass
    else:
        raise DrillError(
            f"{target} exists from an earlier drill; delete it first: aws rds "
            f"delete-db-instance --db-instance-identifier {target} --skip-final-snapshot"
        )
    restore_point = db.get("LatestRestorableTime")
    started_at = now()
    start = clock()
    rds.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=instance_id,
        TargetDBInstanceIdentifier=target,
        UseLatestRestorableTime=True,
        DBSubnetGroupName=db["DBSubnetGroup"]["DBSubnetGroupName"],
        VpcSecurityGroupIds=[g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", [])],
        DBParameterGroupName=db["DBParameterGroups"][0]["DBParameterGroupName"],
        MultiAZ=False,
        PubliclyAccessible=False,
        DeletionProtection=False,
        CopyTagsToSnapshot=True,
        Tags=[DRILL_TAG],
    )
    progress(f"restore of {instance_id} into {target} requested at {started_at.isoformat()}")
    report: dict[str, Any] = {
        "drill": "restore",
        "instance": instance_id,
        "restored_instance": target,
        "restore_point": restore_point.isoformat() if restore_point else None,
        "started_at": started_at.isoformat(),
        "objective_seconds": objective,
    }
    try:
        available = _wait_status(
            rds,
            target,
            "available",
            start=start,
            timeout=AVAILABLE_TIMEOUT_SECONDS,
            clock=clock,
            sleep=sleep,
            progress=progress,
        )
        report["restore_seconds"] = round(available - start, 3)
        restored = describe_instance(rds, target)
        endpoint = restored.get("Endpoint", {})
        report["restored_encrypted"] = restored.get("StorageEncrypted")
        if probe_for is None:
            report["verified"] = None
            report["verification"] = "not run: no database can be reached here"
        else:
            probe = probe_for(endpoint["Address"], int(endpoint.get("Port", 5432)))
            try:
                accepted = wait_for(
                    probe, accepting=True, start=available, timeout=300, clock=clock, sleep=sleep
                )
                report["verified"] = True
                report["verification"] = f"TLS connection and canary query ({CANARY}) succeeded"
                report["verify_seconds"] = round(accepted - available, 3)
            except ProbeTimeout as exc:
                report["verified"] = False
                report["verification"] = str(exc)
    finally:
        _delete_drill_instance(rds, target, report, progress)
    report["ended_at"] = now().isoformat()
    report["total_seconds"] = round(clock() - start, 3)
    # Unverified (nothing could connect) is neither met nor breached.
    report["met"] = (
        None
        if report["verified"] is None
        else bool(report["verified"]) and report["restore_seconds"] < objective
    )
    return report
