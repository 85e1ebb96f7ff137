"""The gate rule ``slot-wal-cap``."""

from __future__ import annotations

from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.flows import Synthesis
from govdr.compliance.templates import Template, props_of, ref_of, resources

RULE = "slot-wal-cap"
FIX = (
    "give every PostgreSQL instance a parameter group with max_slot_wal_keep_size "
    "(slotWalKeepMiB, govdr/stacks/database.py) and an alarm that fires when the slot-lag "
    "metric rises to at most half of it (replicationSlotLagAlarmMiB)"
)


SLOT_WAL_KEEP_PARAMETER = "max_slot_wal_keep_size"

# RDS for PostgreSQL, AWS/RDS namespace, both in Bytes. OldestReplicationSlotLag: "The lagging
# size of the replica lagging the most in terms of write-ahead log (WAL) data received";
# OldestLogicalReplicationSlotLag is the logical slots' own. The page does not say whether the
# first counts logical slots, so both must alarm:
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html
SLOT_LAG_METRICS = ("OldestReplicationSlotLag", "OldestLogicalReplicationSlotLag")
# An alarm on a lag warns only when it fires as the lag grows.
_RISING = frozenset({"GreaterThanThreshold", "GreaterThanOrEqualToThreshold"})


def _capped_groups(templates: dict[str, Template], findings: list[Finding]) -> dict[str, int]:
    """The cap of each PostgreSQL parameter group (by template and logical ID), whatever its
    family's major; a group without a positive whole-number cap is a finding."""
    caps: dict[str, int] = {}
    for name, template in templates.items():
        for logical_id, group in resources(template, "AWS::RDS::DBParameterGroup"):
            if not str(props_of(group).get("Family", "")).startswith("postgres"):
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
                caps[f"{name}/{logical_id}"] = int(str(value))
    return caps


def _capped_instances(
    templates: dict[str, Template], caps: dict[str, int], findings: list[Finding]
) -> set[tuple[str, str]]:
    """The (template, logical ID) of every PostgreSQL instance on a capped group; an instance on
    RDS's default parameter group (max_slot_wal_keep_size -1) or on a group that is not capped
    here has no cap at all, and is a finding."""
    capped: set[tuple[str, str]] = set()
    for name, template in templates.items():
        for logical_id, instance in resources(template, "AWS::RDS::DBInstance"):
            props = props_of(instance)
            if not str(props.get("Engine", "")).startswith("postgres"):
                continue
            group = ref_of(props.get("DBParameterGroupName"))
            if f"{name}/{group}" in caps:
                capped.add((name, logical_id))
            else:
                findings.append(
                    Finding(
                        logical_id,
                        f"the instance's parameter group ({group or 'RDS default'}) does not cap "
                        f"{SLOT_WAL_KEEP_PARAMETER}: a replication slot may keep WAL until the "
                        "storage is full",
                    )
                )
    return capped


def _watched_instance(
    synthesis: Synthesis, name: str, props: dict[str, Any]
) -> tuple[str, str] | str | None:
    """The instance an alarm's DBInstanceIdentifier dimension names (followed across stacks)."""
    for dimension in props.get("Dimensions") or []:
        if isinstance(dimension, dict) and dimension.get("Name") == "DBInstanceIdentifier":
            return synthesis.resolve(name, dimension.get("Value"))
    return None


def slot_wal_cap_findings(templates: dict[str, Template]) -> list[Finding]:
    """A stalled archive cannot fill the primary's storage: every PostgreSQL instance's parameter
    group caps the WAL a slot keeps (``max_slot_wal_keep_size``, MB; -1, RDS's default, keeps WAL
    without limit:
    https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-MAX-SLOT-WAL-KEEP-SIZE),
    and an alarm on the RDS slot-lag metric (bytes) fires as the lag rises to half the smallest
    cap at most, while the archive can still catch up."""
    findings: list[Finding] = []
    caps = _capped_groups(templates, findings)
    capped = _capped_instances(templates, caps, findings)
    if not caps:
        return findings
    limit = min(caps.values()) * 1024 * 1024 // 2
    synthesis = Synthesis(templates)
    lag_alarms = [
        (logical_id, props_of(alarm), _watched_instance(synthesis, name, props_of(alarm)))
        for name, template in templates.items()
        for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm")
        if props_of(alarm).get("MetricName") in SLOT_LAG_METRICS
        # the RDS metric, not a custom one of the same name
        and props_of(alarm).get("Namespace") == "AWS/RDS"
    ]
    alarmed = {props.get("MetricName") for _, props, _ in lag_alarms}
    for required in SLOT_LAG_METRICS:
        if required not in alarmed:
            findings.append(
                Finding("monitoring", f"no alarm on {required} warns before the slot's cap")
            )
    for logical_id, props, watched in lag_alarms:
        metric = props.get("MetricName")
        if watched not in capped:
            findings.append(
                Finding(
                    logical_id,
                    f"{metric} alarms on {watched!r}, which is not a capped PostgreSQL instance "
                    "of this synthesis: the slots it would warn of are not watched",
                )
            )
        threshold = props.get("Threshold")
        operator = props.get("ComparisonOperator")
        if operator not in _RISING:
            findings.append(
                Finding(
                    logical_id,
                    f"{metric} alarms when {operator!r}: it must fire as the lag "
                    f"rises ({' or '.join(sorted(_RISING))})",
                )
            )
        if not isinstance(threshold, int | float) or threshold > limit:
            findings.append(
                Finding(
                    logical_id,
                    f"{metric} alarms at {threshold!r} bytes, above half of "
                    f"the slot's WAL cap ({limit} bytes): it would fire too late to catch up",
                )
            )
    return findings
