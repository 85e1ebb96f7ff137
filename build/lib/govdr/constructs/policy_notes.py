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
