"""The gate rule ``drill-connect``."""

from __future__ import annotations

import json
from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    as_list,
    identity_statements,
    props_of,
    resources,
)
from govdr.txlog.contract import DRILL_ROLE

RULE = "drill-connect"
FIX = (
    "allow rds-db:connect only as govdr_drill on dbuser:<DbiResourceId of an instance of this "
    "stack>/govdr_drill (govdr/stacks/database.py), with IAM database authentication on"
)


DRILL_DB_USER = DRILL_ROLE


def _dbuser_instance(resource: Any) -> str | None:
    """The DBInstance whose DbiResourceId a ``dbuser:`` ARN names, when it names exactly one
    instance of this template and the drills' user; None for any wildcard or other user."""
    if not (isinstance(resource, dict) and "Fn::Join" in resource):
        return None
    separator, parts = resource["Fn::Join"]
    if separator != "" or not isinstance(parts, list):
        return None
    literal = "".join(p if isinstance(p, str) else "\x00" for p in parts)
    if "*" in literal or not literal.endswith(f":dbuser:\x00/{DRILL_DB_USER}"):
        return None
    ids = [
        p["Fn::GetAtt"][0]
        for p in parts
        if isinstance(p, dict) and p.get("Fn::GetAtt", [None, None])[1] == "DbiResourceId"
    ]
    return ids[0] if len(ids) == 1 else None


def drill_connect_findings(template: Template) -> list[Finding]:
    """``rds-db:connect`` only as the drills' user on one instance of this template
    (``dbuser:<DbiResourceId>/govdr_drill``), and that instance has IAM database
    authentication enabled; never a wildcard instance or user.
    https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html
    """
    findings: list[Finding] = []
    instances = dict(resources(template, "AWS::RDS::DBInstance"))
    for logical_id, resource in template.get("Resources", {}).items():
        for statement in identity_statements(resource):
            actions = [str(a).lower() for a in as_list(statement.get("Action"))]
            if statement.get("Effect") != "Allow" or not any(
                a in ("rds-db:connect", "rds-db:*", "*") for a in actions
            ):
                continue
            for target in as_list(statement.get("Resource")):
                instance = _dbuser_instance(target)
                if instance is None or instance not in instances:
                    findings.append(
                        Finding(
                            logical_id,
                            f"rds-db:connect on {json.dumps(target)}; allow only "
                            f"dbuser:<DbiResourceId of an instance of this stack>/{DRILL_DB_USER}",
                        )
                    )
                elif (
                    props_of(instances[instance]).get("EnableIAMDatabaseAuthentication") is not True
                ):
                    findings.append(
                        Finding(
                            logical_id,
                            f"rds-db:connect on {instance}, which does not enable "
                            "IAM database authentication (EnableIAMDatabaseAuthentication)",
                        )
                    )
    return findings
