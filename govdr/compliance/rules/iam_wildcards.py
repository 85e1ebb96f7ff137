"""The gate rule ``iam-wildcards``."""

from __future__ import annotations

from collections.abc import Iterable

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    identity_statements,
)
from govdr.constructs.policy_notes import WILDCARD_RESOURCE_ACTIONS, WILDCARD_RESOURCE_SIDS

RULE = "iam-wildcards"
FIX = "scope actions and resources, or list the Sid in WILDCARD_RESOURCE_SIDS"


def iam_wildcard_findings(template: Template) -> list[Finding]:
    """No Allow statement with a wildcard action; ``*`` resources only where listed."""
    findings = []
    for logical_id, resource in template.get("Resources", {}).items():
        for statement in identity_statements(resource):
            if statement.get("Effect") != "Allow":
                continue
            actions = statement.get("Action", [])
            for action in actions if isinstance(actions, list) else [actions]:
                if action == "*" or str(action).endswith(":*"):
                    findings.append(Finding(logical_id, f"wildcard action {action!r}"))
            resources = statement.get("Resource", [])
            if "*" in (resources if isinstance(resources, list) else [resources]):
                sid = statement.get("Sid")
                if sid not in WILDCARD_RESOURCE_SIDS:
                    findings.append(
                        Finding(
                            logical_id,
                            f"Resource '*' in statement {sid or '(no Sid)'}; scope it "
                            "to ARNs or list the Sid with its reason in WILDCARD_RESOURCE_SIDS",
                        )
                    )
                    continue
                listed = actions if isinstance(actions, list) else [actions]
                extra = sorted(str(a) for a in listed if a not in WILDCARD_RESOURCE_ACTIONS[sid])
                if extra:
                    findings.append(
                        Finding(
                            logical_id,
                            f"statement {sid} allows {', '.join(extra)} on Resource "
                            f"'*', beyond the actions listed for it ("
                            f"{', '.join(sorted(WILDCARD_RESOURCE_ACTIONS[sid]))}); move them to a "
                            "statement scoped to ARNs",
                        )
                    )
    return findings


def unused_wildcard_allowances(templates: Iterable[Template]) -> list[str]:
    """Sids of WILDCARD_RESOURCE_SIDS that no statement with Resource '*' uses: a stale
    allowance waits for a statement to take its name."""
    used = set()
    for template in templates:
        for resource in template.get("Resources", {}).values():
            for statement in identity_statements(resource):
                resources = statement.get("Resource", [])
                if "*" in (resources if isinstance(resources, list) else [resources]):
                    used.add(statement.get("Sid"))
    return sorted(set(WILDCARD_RESOURCE_SIDS) - used)
