"""The gate rule ``key-rotation``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)

RULE = "key-rotation"
FIX = "create keys through govdr.constructs.service_key.ServiceKey"


def key_rotation_findings(template: Template) -> list[Finding]:
    """Every KMS key rotates yearly and has a pending-deletion window set."""
    findings = []
    for logical_id, key in resources(template, "AWS::KMS::Key"):
        props = props_of(key)
        if props.get("EnableKeyRotation") is not True:
            findings.append(Finding(logical_id, "key rotation is not enabled"))
        if not 7 <= int(props.get("PendingWindowInDays", 30)) <= 30:
            findings.append(Finding(logical_id, "pending window must be 7-30 days"))
    return findings
