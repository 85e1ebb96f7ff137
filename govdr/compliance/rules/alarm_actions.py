"""The gate rule ``alarm-actions``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)

RULE = "alarm-actions"
FIX = "give every alarm an alarm and an OK action to the alarms topic"


def alarm_action_findings(template: Template) -> list[Finding]:
    """Every alarm notifies on ALARM and on OK."""
    findings = []
    for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm"):
        props = props_of(alarm)
        if not props.get("AlarmActions"):
            findings.append(Finding(logical_id, "alarm has no alarm action"))
        if not props.get("OKActions"):
            findings.append(Finding(logical_id, "alarm has no OK action"))
    return findings
