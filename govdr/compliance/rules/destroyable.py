"""The gate rule ``destroyable``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
)

RULE = "destroyable"
FIX = "use RemovalPolicy.DESTROY unless config.retain_data (the prod switch)"


STATEFUL_TYPES = frozenset(
    {
        "AWS::RDS::DBInstance",
        "AWS::EFS::FileSystem",
        "AWS::KMS::Key",
        "AWS::SecretsManager::Secret",
        "AWS::Logs::LogGroup",
        "AWS::S3::Bucket",
        "AWS::Backup::BackupVault",
    }
)


def destroyability_findings(template: Template) -> list[Finding]:
    """Stateful resources are deleted with the stack; nothing blocks or outlives a teardown."""
    findings = []
    for logical_id, resource in template.get("Resources", {}).items():
        rtype = resource.get("Type")
        policy = resource.get("DeletionPolicy")
        # An RDS instance without DeletionPolicy is snapshotted by CloudFormation, so
        # stateful types need an explicit Delete.
        if rtype in STATEFUL_TYPES and policy != "Delete":
            findings.append(
                Finding(
                    logical_id,
                    f"DeletionPolicy is {policy or 'unset'}, not Delete",
                    resource_type=rtype,
                )
            )
        elif policy not in (None, "Delete"):
            findings.append(
                Finding(logical_id, f"DeletionPolicy is {policy}, not Delete", resource_type=rtype)
            )
        if rtype == "AWS::RDS::DBInstance":
            props = props_of(resource)
            if props.get("DeletionProtection") is not False:
                findings.append(Finding(logical_id, "DeletionProtection is not false"))
            if props.get("DeleteAutomatedBackups") is False:
                findings.append(Finding(logical_id, "automated backups would outlive the instance"))
    return findings
