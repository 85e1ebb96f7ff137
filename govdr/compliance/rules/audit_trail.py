"""The gate rule ``audit-trail``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    resources,
)

RULE = "audit-trail"
FIX = (
    "create the trail (leave existingTrailArn empty) or name an existing multi-region trail"
    " with -c existingTrailArn=arn:aws:cloudtrail:..."
)


def trail_presence_findings(
    templates: dict[str, Template], existing_trail_arn: str | None
) -> list[Finding]:
    """AU-2/AU-12: the account's API activity is recorded by a trail of this synth or by the
    existing trail the configuration names (govdr preflight checks that one in the account)."""
    created = [
        logical_id
        for template in templates.values()
        for logical_id, _ in resources(template, "AWS::CloudTrail::Trail")
    ]
    if created and existing_trail_arn:
        return [Finding(created[0], "a trail is created although existingTrailArn is set")]
    if not created and not existing_trail_arn:
        return [Finding("audit", "no CloudTrail trail is created and no existing trail is named")]
    return []
