"""Policy grammar: parliament over every policy document of the synthesis.

parliament (https://github.com/duo-labs/parliament) checks each statement against the IAM
definition of every service (the service authorization reference,
https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html):
actions that do not exist, condition keys that the named actions do not support, condition
operators that do not fit the key's type, resources of the wrong type, malformed statements.
Documents are linted with their intrinsics resolved to placeholders of the right shape
(govdr.compliance.policies). A finding that AWS's own documentation contradicts is accepted
with its reason on the resource, through govdr.constructs.policy_notes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from functools import cache
from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.policies import (
    GETATT_SHAPES,
    PolicyDocumentRef,
    Template,
    policy_documents,
    statements,
)
from govdr.constructs.policy_notes import METADATA_KEY

RULE = "policy-grammar"
FIX = (
    "use actions and condition keys the service authorization reference lists for each "
    "action, with operators of the key's type; accept a finding AWS documents with "
    "govdr.constructs.policy_notes.accept(...) and its reason"
)


# parliament's issues that this rule enforces: the grammar of a statement.
ENFORCED = frozenset(
    {
        "EXCEPTION",
        "MALFORMED_JSON",
        "MALFORMED",
        "DUPLICATE_SID",
        "INVALID_SID",
        "INVALID_VERSION",
        "INVALID_ARN",
        "UNKNOWN_ACTION",
        "UNKNOWN_PREFIX",
        "UNKNOWN_PRINCIPAL",
        "UNKNOWN_FEDERATION_SOURCE",
        "UNKNOWN_OPERATOR",
        "UNKNOWN_CONDITION_FOR_ACTION",
        "MISMATCHED_TYPE",
        "MISMATCHED_TYPE_BUT_USABLE",
        "MISMATCHED_TYPE_OPERATION_TO_NULL",
        "RESOURCE_MISMATCH",
    }
)
# Not grammar, and governed elsewhere: Resource "*" is what every key policy names (the key
# itself), and identity-policy wildcards are the iam-wildcards rule (WILDCARD_RESOURCE_SIDS);
# the privilege-escalation heuristic judges which permissions a bucket policy grants, which
# cdk-nag and the review of each grant do.
NOT_ENFORCED = frozenset(
    {"RESOURCE_STAR", "RESOURCE_EFFECTIVELY_STAR", "RESOURCE_POLICY_PRIVILEGE_ESCALATION"}
)
# Statements of these documents act on the resource that holds them and name no Resource
# (trust policies, EFS file system policies): it is filled in before linting.
IMPLIED_RESOURCE = {
    ("AWS::IAM::Role", "Arn"),
    ("AWS::EFS::FileSystem", "Arn"),
}


@cache
def _parliament() -> Any:
    # parliament loads its IAM definition through pkg_resources, which warns that it is
    # deprecated on import; the warning is about parliament's packaging, not our policies.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import parliament

    return parliament


def _implied_resource(ref: PolicyDocumentRef) -> str | None:
    for rtype, attribute in IMPLIED_RESOURCE:
        if ref.resource_type == rtype:
            return GETATT_SHAPES[(rtype, attribute)].format(
                id=ref.logical_id, lid=ref.logical_id.lower()
            )
    return None


def _label(statement: Mapping[str, Any], index: int) -> str:
    sid = statement.get("Sid")
    return f"statement {sid}" if sid else f"statement #{index}"


def _detail(issue: str, detail: Any) -> str:
    if issue == "RESOURCE_MISMATCH" and isinstance(detail, list):
        actions = sorted({str(item.get("action")) for item in detail if isinstance(item, dict)})
        return "no resource of the statement fits " + ", ".join(actions)
    return str(detail)


def _notes(template: Template, logical_id: str) -> list[dict[str, Any]]:
    metadata = template.get("Resources", {}).get(logical_id, {}).get("Metadata", {})
    notes = metadata.get(METADATA_KEY, []) if isinstance(metadata, dict) else []
    return [n for n in notes if isinstance(n, dict)]


def _accepted(notes: list[dict[str, Any]], statement: Mapping[str, Any], issue: str) -> bool:
    actions = statement.get("Action", [])
    actions = actions if isinstance(actions, list) else [actions]
    for note in notes:
        if note.get("issue") != issue or not str(note.get("reason", "")).strip():
            continue
        if "sid" in note and note["sid"] == statement.get("Sid"):
            return True
        if "action" in note and note["action"] in actions:
            return True
    return False


def lint_statement(statement: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(issue, detail) of every enforced parliament finding on one statement."""
    document = {"Version": "2012-10-17", "Statement": [dict(statement)]}
    policy = _parliament().analyze_policy_string(json.dumps(document), ignore_private_auditors=True)
    found = []
    for finding in policy.findings:
        if finding.issue in NOT_ENFORCED:
            continue
        found.append((str(finding.issue), _detail(str(finding.issue), finding.detail)))
    return found


def policy_grammar_findings(templates: Mapping[str, Template]) -> list[Finding]:
    """One finding per enforced parliament issue that no policy note accepts."""
    findings: list[Finding] = []
    for ref in policy_documents(templates):
        notes = _notes(templates[ref.template], ref.logical_id)
        implied = _implied_resource(ref)
        seen_sids: set[str] = set()
        for index, statement in enumerate(statements(ref.document)):
            label = _label(statement, index)
            sid = statement.get("Sid")
            if isinstance(sid, str):
                if sid in seen_sids:
                    findings.append(Finding(ref.logical_id, f"{ref.where} {label}: DUPLICATE_SID"))
                seen_sids.add(sid)
            linted = dict(statement)
            if implied and "Resource" not in linted and "NotResource" not in linted:
                linted["Resource"] = implied
            for issue, detail in lint_statement(linted):
                if issue in ENFORCED and _accepted(notes, statement, issue):
                    continue
                findings.append(Finding(ref.logical_id, f"{ref.where} {label}: {issue} {detail}"))
    return findings
