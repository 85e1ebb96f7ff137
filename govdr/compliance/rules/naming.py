"""The gate rule ``naming``."""

from __future__ import annotations

import re
from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    LOG_GROUP_TYPE,
    Template,
    props_of,
)

RULE = "naming"
FIX = "name resources with govdr.naming.name(resource_type, suffix)"


# Where each named resource type keeps its physical name.
NAME_PROPERTIES: dict[str, tuple[str, ...]] = {
    "AWS::RDS::DBInstance": ("DBInstanceIdentifier",),
    "AWS::RDS::DBParameterGroup": ("DBParameterGroupName",),
    "AWS::RDS::DBSubnetGroup": ("DBSubnetGroupName",),
    "AWS::SecretsManager::Secret": ("Name",),
    "AWS::KMS::Alias": ("AliasName",),
    "AWS::EC2::SecurityGroup": ("GroupName",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::CloudWatch::Alarm": ("AlarmName",),
    "AWS::CloudWatch::Dashboard": ("DashboardName",),
    "AWS::RDS::EventSubscription": ("SubscriptionName",),
    "AWS::Events::Rule": ("Name",),
    "AWS::CloudTrail::Trail": ("TrailName",),
    "AWS::Backup::BackupVault": ("BackupVaultName",),
    "AWS::Backup::BackupPlan": ("BackupPlan", "BackupPlanName"),
    "AWS::Backup::BackupSelection": ("BackupSelection", "SelectionName"),
    "AWS::Lambda::Function": ("FunctionName",),
}


# Functions that CDK itself adds (custom-resource providers) keep generated names, which
# start with the stack name and so carry the suffix too.
GENERATED_NAME_TYPES = frozenset(
    {"AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::Lambda::Function"}
)


NAME_TAG_TYPES = frozenset(
    {"AWS::EC2::VPC", "AWS::EFS::FileSystem", "AWS::EFS::AccessPoint", "AWS::EC2::FlowLog"}
)


def _tag(props: dict[str, Any], key: str, tags_property: str) -> Any:
    tags = props.get(tags_property, [])
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and tag.get("Key") == key:
            return tag.get("Value")
    return None


def _physical_name(rtype: str, props: dict[str, Any]) -> Any:
    if rtype in NAME_PROPERTIES:
        value: Any = props
        for part in NAME_PROPERTIES[rtype]:
            value = value.get(part) if isinstance(value, dict) else None
        return value
    tags_property = "FileSystemTags" if rtype == "AWS::EFS::FileSystem" else "Tags"
    if rtype == "AWS::EFS::AccessPoint":
        tags_property = "AccessPointTags"
    return _tag(props, "Name", tags_property)


def naming_findings(template: Template, suffix: str) -> list[Finding]:
    """Every literal physical name follows ``{resource-type}-{suffix}``."""
    findings = []
    for logical_id, resource in template.get("Resources", {}).items():
        rtype = resource.get("Type", "")
        # Names fixed by the service that writes to them carry the suffix as a path segment.
        if rtype == LOG_GROUP_TYPE:
            value = props_of(resource).get("LogGroupName")
            carries = re.compile(rf"(^|[-/]){re.escape(suffix)}($|[-/])")
            if not isinstance(value, str) or not carries.search(value):
                findings.append(
                    Finding(
                        logical_id, f"name {value!r} does not carry {suffix}", resource_type=rtype
                    )
                )
            continue
        if rtype not in NAME_PROPERTIES and rtype not in NAME_TAG_TYPES:
            continue
        value = _physical_name(rtype, props_of(resource))
        if value is None:
            if rtype not in GENERATED_NAME_TYPES:
                findings.append(Finding(logical_id, "has no physical name", resource_type=rtype))
            continue
        if not isinstance(value, str):
            findings.append(
                Finding(logical_id, "physical name is not a literal", resource_type=rtype)
            )
        elif not value.endswith(f"-{suffix}"):
            findings.append(
                Finding(
                    logical_id, f"name {value!r} does not end with -{suffix}", resource_type=rtype
                )
            )
    return findings
