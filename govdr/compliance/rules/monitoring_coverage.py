"""The gate rule ``monitoring-coverage``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)

RULE = "monitoring-coverage"
FIX = "keep the alarms, dashboard, event subscription and rules of govdr/stacks/monitoring.py"


# Written out here rather than imported from the stacks: a check that read the code's own
# constant could not notice the code dropping a category.
REQUIRED_RDS_EVENT_CATEGORIES = frozenset(
    {
        "availability",
        "failover",
        "failure",
        "low storage",
        "maintenance",
        "notification",
        "recovery",
    }
)


# Metrics the synthesis must alarm on, all its templates together (the contract with
# operators: health, storage, memory, connections, latency, queueing, WAL retention, EFS).
REQUIRED_ALARM_METRICS = frozenset(
    {
        ("AWS/RDS", "CPUUtilization"),
        ("AWS/RDS", "FreeStorageSpace"),
        ("AWS/RDS", "FreeableMemory"),
        ("AWS/RDS", "DatabaseConnections"),
        ("AWS/RDS", "ReadLatency"),
        ("AWS/RDS", "WriteLatency"),
        ("AWS/RDS", "DiskQueueDepth"),
        ("AWS/RDS", "TransactionLogsDiskUsage"),
        ("AWS/RDS", "OldestReplicationSlotLag"),
        ("AWS/RDS", "OldestLogicalReplicationSlotLag"),
        ("AWS/EFS", "PercentIOLimit"),
    }
)


def monitoring_coverage_findings(templates: dict[str, Template]) -> list[Finding]:
    """The synthesis as a whole (root and nested templates together) has an alarm on every
    required metric, the RDS event subscription, the EventBridge rules and a dashboard. A
    synthesis without alarms fails: nothing passes for having nothing to judge."""
    template: Template = {
        "Resources": {
            f"{name}:{logical_id}": resource
            for name, one in templates.items()
            for logical_id, resource in one.get("Resources", {}).items()
        }
    }
    alarms = [props_of(a) for _, a in resources(template, "AWS::CloudWatch::Alarm")]
    findings = []
    alarmed = {(a.get("Namespace"), a.get("MetricName")) for a in alarms}
    for namespace, metric in sorted(REQUIRED_ALARM_METRICS - alarmed):
        findings.append(Finding("monitoring", f"no alarm on {namespace} {metric}"))
    if not list(resources(template, "AWS::CloudWatch::Dashboard")):
        findings.append(Finding("monitoring", "no dashboard"))
    subscriptions = [props_of(s) for _, s in resources(template, "AWS::RDS::EventSubscription")]
    if not subscriptions:
        findings.append(Finding("monitoring", "no RDS event subscription"))
    for sub in subscriptions:
        missing = REQUIRED_RDS_EVENT_CATEGORIES - set(sub.get("EventCategories", []))
        if missing or sub.get("Enabled") is not True:
            findings.append(
                Finding(
                    "monitoring",
                    f"RDS event subscription {sub.get('SubscriptionName')} misses "
                    f"{', '.join(sorted(missing)) or 'Enabled=true'}",
                )
            )
    patterns = [
        props_of(r).get("EventPattern", {}) for _, r in resources(template, "AWS::Events::Rule")
    ]
    if not any(
        p.get("source") == ["aws.rds"]
        and "failover" in p.get("detail", {}).get("EventCategories", [])
        for p in patterns
    ):
        findings.append(Finding("monitoring", "no EventBridge rule for RDS failover events"))
    if not any(
        p.get("source") == ["aws.secretsmanager"]
        and "RotationFailed" in p.get("detail", {}).get("eventName", [])
        for p in patterns
    ):
        findings.append(Finding("monitoring", "no EventBridge rule for failed secret rotation"))
    return findings
