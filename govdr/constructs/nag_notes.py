"""Rule-pack findings accepted by design, acknowledged where the resource is built.

cdk-nag's idiom: the construct that makes a resource says which finding of the NIST 800-53 rev5,
AWS Solutions or HIPAA Security pack it accepts there, and why. :func:`accept_findings`
acknowledges the rules on the resource's CloudFormation construct with CDK's validation API
(``cdk.Validations.of(...).acknowledge``, which the packs honour) and records the reason in the
construct's metadata, from which :func:`acknowledgments` collects every one of a construct tree
for the control matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aws_cdk as cdk
from constructs import IConstruct

PACKS = ("NIST.800.53.R5", "AwsSolutions", "HIPAA.Security")
METADATA_TYPE = "govdr:acknowledgment"
MIN_REASON = 60


@dataclass(frozen=True)
class Ack:
    """One acknowledged finding: where, which rule, and why."""

    path: str
    rule: str
    reason: str


def _resource(construct: IConstruct) -> IConstruct:
    child = construct.node.default_child
    return child if child is not None else construct


def accept_findings(construct: IConstruct, rules: Iterable[str], reason: str) -> None:
    """Acknowledge each of ``rules`` (pack rule ids, e.g. ``AwsSolutions-RDS11`` or
    ``AwsSolutions-IAM5[Resource::*]``) on the construct's CloudFormation resource."""
    if len(reason.strip()) < MIN_REASON:
        raise ValueError(
            f"accepting {list(rules)} on {construct.node.path} needs its reason in at least "
            f"{MIN_REASON} characters (got {reason!r})"
        )
    target = _resource(construct)
    for rule in rules:
        if rule.split("-", 1)[0] not in PACKS:
            raise ValueError(f"{rule!r} is not a rule of the packs {', '.join(PACKS)}")
        cdk.Validations.of(target).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))
        target.node.add_metadata(METADATA_TYPE, {"rule": rule, "reason": reason})


def acknowledgments(scope: IConstruct) -> list[Ack]:
    """Every finding accepted in ``scope``'s tree, in construction order."""
    found: list[Ack] = []
    for construct in scope.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == METADATA_TYPE:
                data = dict(entry.data)
                found.append(Ack(construct.node.path, str(data["rule"]), str(data["reason"])))
    return found


__all__ = ["PACKS", "Ack", "accept_findings", "acknowledgments"]
