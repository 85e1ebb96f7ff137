"""The gate rule ``backup-coverage``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    referenced_ids,
    resources,
)

RULE = "backup-coverage"
FIX = "add a BackupSelection beside the resource, in the same stack"


def backup_coverage_findings(template: Template) -> list[Finding]:
    """Every database instance and file system is in a backup selection of its own template."""
    covered: set[str] = set()
    for _, selection in resources(template, "AWS::Backup::BackupSelection"):
        spec = props_of(selection).get("BackupSelection", {})
        for entry in spec.get("Resources", []) if isinstance(spec, dict) else []:
            covered.update(referenced_ids(entry))
    findings = []
    for rtype in ("AWS::RDS::DBInstance", "AWS::EFS::FileSystem"):
        for logical_id, _ in resources(template, rtype):
            if logical_id not in covered:
                findings.append(
                    Finding(logical_id, "not in any backup selection", resource_type=rtype)
                )
    return findings
