"""The gate rule ``no-open-ingress``."""

from __future__ import annotations

from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    as_list,
    props_of,
    resources,
)

RULE = "no-open-ingress"
FIX = "allow traffic from security groups or the VPC CIDR only"


def open_ingress_findings(template: Template) -> list[Finding]:
    """No security group accepts traffic from the whole internet."""
    findings = []

    def check(logical_id: str, rule: dict[str, Any]) -> None:
        if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0":
            findings.append(Finding(logical_id, "ingress open to the internet"))

    for logical_id, sg in resources(template, "AWS::EC2::SecurityGroup"):
        for rule in as_list(props_of(sg).get("SecurityGroupIngress", [])):
            check(logical_id, rule)
    for logical_id, rule in resources(template, "AWS::EC2::SecurityGroupIngress"):
        check(logical_id, props_of(rule))
    return findings
