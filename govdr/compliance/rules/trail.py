"""The gate rule ``trail``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)

RULE = "trail"
FIX = "keep the trail logging, validated, encrypted, multi-region and sent to Logs"


def trail_findings(template: Template) -> list[Finding]:
    """Every trail logs, validates and encrypts its files, covers all regions, feeds Logs."""
    findings = []
    for logical_id, trail in resources(template, "AWS::CloudTrail::Trail"):
        props = props_of(trail)
        for prop, wanted in (
            ("IsLogging", True),
            ("EnableLogFileValidation", True),
            ("IsMultiRegionTrail", True),
            ("IncludeGlobalServiceEvents", True),
        ):
            if props.get(prop) is not wanted:
                findings.append(Finding(logical_id, f"{prop} is not {wanted}"))
        for prop in ("KMSKeyId", "CloudWatchLogsLogGroupArn", "CloudWatchLogsRoleArn"):
            if not props.get(prop):
                findings.append(Finding(logical_id, f"{prop} is not set"))
    return findings
