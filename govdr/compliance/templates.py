"""Reading synthesized CloudFormation templates: what every gate rule shares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Template = dict[str, Any]
LOG_GROUP_TYPE = "AWS::Logs::LogGroup"


def resources(template: Template, rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == rtype:
            yield logical_id, resource


def props_of(resource: dict[str, Any]) -> dict[str, Any]:
    props = resource.get("Properties", {})
    return props if isinstance(props, dict) else {}


def statements_of(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def referenced_ids(value: Any) -> set[str]:
    """Logical IDs that a template value refers to (Ref and Fn::GetAtt, at any depth)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value and isinstance(value["Fn::GetAtt"], list):
            found.add(str(value["Fn::GetAtt"][0]))
        for item in value.values():
            found |= referenced_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= referenced_ids(item)
    return found


def identity_statements(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Statements of IAM policies (managed, inline, role inline) in a template resource."""
    rtype = resource.get("Type")
    props = resource.get("Properties", {})
    documents: list[Any] = []
    if rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        documents.append(props.get("PolicyDocument"))
    elif rtype == "AWS::IAM::Role":
        documents.extend(p.get("PolicyDocument") for p in props.get("Policies", []))
    for document in documents:
        statements = document.get("Statement", []) if isinstance(document, dict) else []
        yield from statements if isinstance(statements, list) else [statements]


def ref_of(value: Any) -> str | None:
    ref = value.get("Ref") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) else None


def denies_insecure_transport(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition", {})
    secure = (
        condition.get("Bool", {}).get("aws:SecureTransport")
        if isinstance(condition, dict)
        else None
    )
    return statement.get("Effect") == "Deny" and str(secure).lower() == "false"
