"""The gate rule ``slot-wal-cap``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)
from govdr.engine import major_of_family

RULE = "slot-wal-cap"
FIX = (
    "keep max_slot_wal_keep_size in the parameter group (slotWalKeepMiB, "
    "govdr/stacks/database.py) and the slot-lag alarm at most half of it "
    "(replicationSlotLagAlarmMiB)"
)


SLOT_WAL_KEEP_PARAMETER = "max_slot_wal_keep_size"


SLOT_LAG_METRIC = "OldestReplicationSlotLag"


def slot_wal_cap_findings(templates: dict[str, Template]) -> list[Finding]:
    """A stalled archive cannot fill the primary's storage: every PostgreSQL parameter group caps
    the WAL a slot keeps (``max_slot_wal_keep_size``, MB; -1 or unset keeps WAL without limit:
    https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-MAX-SLOT-WAL-KEEP-SIZE),
    and an alarm on the RDS slot-lag metric (bytes,
    https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html) fires at half the
    smallest cap at most, while the archive can still catch up."""
    findings: list[Finding] = []
    caps: list[int] = []
    for template in templates.values():
        for logical_id, group in resources(template, "AWS::RDS::DBParameterGroup"):
            if major_of_family(str(props_of(group).get("Family", ""))) is None:
                continue
            value = props_of(group).get("Parameters", {}).get(SLOT_WAL_KEEP_PARAMETER)
            if not str(value).isdigit() or int(str(value)) <= 0:
                findings.append(
                    Finding(
                        logical_id,
                        f"{SLOT_WAL_KEEP_PARAMETER} is {value!r}: a replication slot "
                        "may keep WAL until the storage is full",
                    )
                )
            else:
                caps.append(int(str(value)))
    if not caps:
        return findings
    limit = min(caps) * 1024 * 1024 // 2
    lag_alarms = [
        (logical_id, props_of(alarm))
        for template in templates.values()
        for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm")
        if props_of(alarm).get("MetricName") == SLOT_LAG_METRIC
    ]
    if not lag_alarms:
        findings.append(
            Finding("monitoring", f"no alarm on {SLOT_LAG_METRIC} warns before the slot's cap")
        )
    for logical_id, props in lag_alarms:
        threshold = props.get("Threshold")
        if not isinstance(threshold, int | float) or threshold > limit:
            findings.append(
                Finding(
                    logical_id,
                    f"{SLOT_LAG_METRIC} alarms at {threshold!r} bytes, above half of "
                    f"the slot's WAL cap ({limit} bytes): it would fire too late to catch up",
                )
            )
    return findings
