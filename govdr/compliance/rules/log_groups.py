"""The gate rule ``log-groups``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    LOG_GROUP_TYPE,
    Template,
    props_of,
    resources,
)

RULE = "log-groups"
FIX = "create log groups through govdr.constructs.log_group.encrypted_log_group"


def log_group_findings(template: Template, min_retention_days: int = 365) -> list[Finding]:
    """Every log group is KMS-encrypted and kept at least ``min_retention_days``."""
    findings = []
    for logical_id, group in resources(template, LOG_GROUP_TYPE):
        props = props_of(group)
        if not props.get("KmsKeyId"):
            findings.append(Finding(logical_id, "log group is not encrypted with a KMS key"))
        retention = props.get("RetentionInDays")
        if not isinstance(retention, int) or retention < min_retention_days:
            findings.append(
                Finding(
                    logical_id,
                    f"retention {retention or 'unlimited'} days, "
                    f"must be set and >= {min_retention_days}",
                )
            )
    return findings
