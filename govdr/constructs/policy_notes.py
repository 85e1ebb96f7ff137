"""Acknowledged policy-grammar findings, recorded on the resource whose policy they concern.

The policy-grammar gate rule (govdr.compliance.policy_grammar) lints every policy document
with parliament. A finding that is right by AWS's own documentation is accepted where the
policy is built, with its reason, by :func:`accept`: the note goes into the resource's
CloudFormation ``Metadata`` under :data:`METADATA_KEY` (CloudFormation keeps metadata and
ignores it: https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-metadata.html),
so the template itself says which finding is accepted and why, and removing the note brings
the finding back.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnResource
from constructs import IConstruct

METADATA_KEY = "govdr:policy-notes"


def accept(
    construct: IConstruct,
    *,
    issue: str,
    reason: str,
    sid: str | None = None,
    action: str | None = None,
) -> None:
    """Accept parliament finding ``issue`` on the statement with ``sid`` (or, for statements
    that CDK writes without a Sid, the statements that name ``action``) of the construct's
    policy documents."""
    if (sid is None) == (action is None):
        raise ValueError("a policy note names the statement by exactly one of sid or action")
    if not reason.strip():
        raise ValueError(f"a policy note for {issue} must give its reason")
    resource = construct.node.default_child if construct.node.default_child else construct
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to note on")
    notes: list[dict[str, Any]] = list(resource.get_metadata(METADATA_KEY) or [])
    note: dict[str, Any] = {"issue": issue, "reason": reason}
    note.update({"sid": sid} if sid is not None else {"action": action})
    notes.append(note)
    resource.add_metadata(METADATA_KEY, notes)


# IAM statements may use Resource "*" only where the AWS API has no resource-level
# permissions. Each such statement is named by its Sid here, with the reason
# (gate rule iam-wildcards, govdr.compliance.template_checks).
WILDCARD_RESOURCE_SIDS = {
    "StopBackupJobs": "backup:ListBackupJobs and backup:StopBackupJob accept no resource ARN",
    "VpcNetworkInterfaces": (
        "Lambda in a VPC creates and deletes its ENIs; these ec2 actions accept no resource ARN "
        "at creation time"
    ),
    "GenerateRandomPassword": (
        "secretsmanager:GetRandomPassword acts on no resource (rotation functions call it for "
        "new passwords); https://docs.aws.amazon.com/secretsmanager/latest/userguide/"
        "rotating-secrets-required-permissions-function.html"
    ),
}

# The actions each listed statement may carry: a listed Sid is no licence for other actions
# on every resource (a statement named StopBackupJobs that also allowed rds:DeleteDBInstance on
# "*" would pass on its name alone).
WILDCARD_RESOURCE_ACTIONS = {
    "StopBackupJobs": frozenset({"backup:ListBackupJobs", "backup:StopBackupJob"}),
    "VpcNetworkInterfaces": frozenset(
        {
            "ec2:CreateNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        }
    ),
    "GenerateRandomPassword": frozenset({"secretsmanager:GetRandomPassword"}),
}
