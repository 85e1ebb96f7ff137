"""A small IAM policy evaluator: does one policy document allow one request?

It models what govdr's key policies use, following the IAM policy evaluation logic
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
an explicit Deny wins, otherwise an Allow whose Principal, Action, Resource and every
Condition match, otherwise the request is implicitly denied. Conditions follow
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
and the set operators of
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html.
Anything it does not model (an operator, NotPrincipal) raises :class:`UnsupportedPolicy`,
so a policy it cannot read is a finding and never an allow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ContextValue = str | bool | Sequence[str]

_STRING_OPS = {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
}
_ARN_OPS = {"ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"}
SUPPORTED_OPERATORS = frozenset({*_STRING_OPS, *_ARN_OPS, "Bool", "Null"})
_NEGATED = {
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringNotLike",
    "ArnNotEquals",
    "ArnNotLike",
}


class UnsupportedPolicy(ValueError):
    """The document uses an element or operator that this evaluator does not model."""


@dataclass(frozen=True)
class Request:
    """One request to a resource: who (``Service`` or ``AWS`` principal), what, and context."""

    principal_type: str
    principal: str
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def describe(self) -> str:
        context = ", ".join(f"{k}={_show(v)}" for k, v in sorted(self.context.items()))
        return f"{self.action} by {self.principal}" + (f" with {context}" if context else "")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "allowed by <sid>", "explicitly denied by <sid>" or "no statement allows it"


def _show(value: ContextValue) -> str:
    return (
        value
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else ("[" + ", ".join(value) + "]")
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcard match: ``*`` any run of characters, ``?`` one character."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch(regex, value, flags) is not None


def _arn_match(pattern: str, value: str) -> bool:
    """ARN operators compare the six colon-separated parts each with wildcards."""
    pattern_parts = pattern.split(":", 5)
    value_parts = value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(_glob(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


def _matches_one(operator: str, pattern: str, value: str) -> bool:
    if operator in {"StringEquals", "StringNotEquals"}:
        return pattern == value
    if operator in {"StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"}:
        return pattern.lower() == value.lower()
    if operator in {"StringLike", "StringNotLike"}:
        return _glob(pattern, value)
    if operator in _ARN_OPS:
        return _arn_match(pattern, value)
    if operator == "Bool":
        return pattern.lower() == value.lower()
    raise UnsupportedPolicy(f"condition operator {operator}")


def _parse_operator(raw: str) -> tuple[str | None, str, bool]:
    qualifier, _, rest = raw.rpartition(":")
    if qualifier not in {"", "ForAnyValue", "ForAllValues"}:
        raise UnsupportedPolicy(f"condition operator {raw}")
    if_exists = rest.endswith("IfExists")
    base = rest.removesuffix("IfExists")
    if base not in SUPPORTED_OPERATORS or (base == "Null" and (if_exists or qualifier)):
        raise UnsupportedPolicy(f"condition operator {raw}")
    return qualifier or None, base, if_exists


def _lookup(context: Mapping[str, ContextValue], key: str) -> ContextValue | None:
    wanted = key.lower()
    for name, value in context.items():
        if name.lower() == wanted:
            return value
    return None


def condition_holds(
    operator_raw: str, key: str, expected: Any, context: Mapping[str, ContextValue]
) -> bool:
    """Whether ``{operator_raw: {key: expected}}`` holds for the request context."""
    qualifier, operator, if_exists = _parse_operator(operator_raw)
    patterns = [str(p).lower() if isinstance(p, bool) else str(p) for p in _as_list(expected)]
    present = _lookup(context, key)
    if operator == "Null":
        return (present is None) == (patterns == ["true"])
    if present is None:
        if if_exists or qualifier == "ForAllValues":
            return True
        return operator in _NEGATED
    values = (
        [str(present).lower()]
        if isinstance(present, bool)
        else [present]
        if isinstance(present, str)
        else [str(v) for v in present]
    )
    negated = operator in _NEGATED

    def one(value: str) -> bool:
        hit = any(_matches_one(operator, pattern, value) for pattern in patterns)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)


def _principal_matches(principal: Any, request: Request) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        raise UnsupportedPolicy(f"Principal {principal!r}")
    for kind, names in principal.items():
        if kind not in {"AWS", "Service", "Federated", "CanonicalUser"}:
            raise UnsupportedPolicy(f"Principal type {kind}")
        for name in _as_list(names):
            name = str(name)
            if kind == "AWS" and name == "*":
                # {"AWS": "*"} is the same as "*":
                # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-anonymous
                return True
            if kind != request.principal_type:
                continue
            if kind == "Service" and name.lower() == request.principal.lower():
                return True
            if kind == "AWS" and _aws_principal_matches(name, request.principal):
                return True
    return False


def _aws_principal_matches(name: str, principal: str) -> bool:
    """An account (ID or its root ARN) names every principal of that account, whose own
    IAM policies then decide; a role or user ARN names itself."""
    account = principal.split(":")[4] if principal.count(":") >= 5 else ""
    root = re.fullmatch(r"arn:[^:]+:iam::(\d{12}):root", name)
    if name.isdigit():
        return name == account
    if root:
        return root.group(1) == account
    return name == principal


def _any_glob(patterns: Any, value: str, *, ignore_case: bool) -> bool:
    return any(_glob(str(p), value, ignore_case=ignore_case) for p in _as_list(patterns))


def _element_matches(
    statement: Mapping[str, Any], element: str, value: str, *, ignore_case: bool
) -> bool:
    """``Action``/``Resource`` must match, ``NotAction``/``NotResource`` must not; a
    statement with neither names every value."""
    if element in statement:
        return _any_glob(statement[element], value, ignore_case=ignore_case)
    if f"Not{element}" in statement:
        return not _any_glob(statement[f"Not{element}"], value, ignore_case=ignore_case)
    return True


def statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    """Whether Principal, Action, Resource and every Condition of ``statement`` match."""
    if "NotPrincipal" in statement:
        raise UnsupportedPolicy("NotPrincipal")
    if "Principal" in statement and not _principal_matches(statement["Principal"], request):
        return False
    if "Action" not in statement and "NotAction" not in statement:
        raise UnsupportedPolicy("a statement without Action or NotAction")
    if not _element_matches(statement, "Action", request.action, ignore_case=True):
        return False
    if not _element_matches(statement, "Resource", request.resource, ignore_case=False):
        return False
    conditions = statement.get("Condition", {})
    if not isinstance(conditions, dict):
        raise UnsupportedPolicy(f"Condition {conditions!r}")
    for operator, block in conditions.items():
        if not isinstance(block, dict):
            raise UnsupportedPolicy(f"condition block {operator}: {block!r}")
        for key, expected in block.items():
            if not condition_holds(operator, key, expected, request.context):
                return False
    return True


def evaluate(document: Mapping[str, Any], request: Request) -> Decision:
    """The decision of one policy document (a key policy, say) on ``request``."""
    raw = document.get("Statement", [])
    statements = [s for s in (raw if isinstance(raw, list) else [raw]) if isinstance(s, dict)]
    allowed_by: str | None = None
    for index, statement in enumerate(statements):
        label = str(statement.get("Sid") or f"#{index}")
        effect = statement.get("Effect")
        if effect not in {"Allow", "Deny"}:
            raise UnsupportedPolicy(f"Effect {effect!r} in statement {label}")
        if not statement_applies(statement, request):
            continue
        if effect == "Deny":
            return Decision(False, f"explicitly denied by statement {label}")
        allowed_by = allowed_by or label
    if allowed_by is not None:
        return Decision(True, f"allowed by statement {allowed_by}")
    return Decision(False, "no statement allows it")
