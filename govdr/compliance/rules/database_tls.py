"""The gate rule ``database-tls``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)

RULE = "database-tls"
FIX = "keep rds.force_ssl=1 in govdr/stacks/database.py PARAMETERS"


def database_tls_findings(template: Template) -> list[Finding]:
    """Every PostgreSQL instance uses a parameter group of this template with rds.force_ssl=1."""
    findings = []
    enforcing = {
        logical_id
        for logical_id, group in resources(template, "AWS::RDS::DBParameterGroup")
        if str(props_of(group).get("Parameters", {}).get("rds.force_ssl")) == "1"
    }
    for logical_id, _ in resources(template, "AWS::RDS::DBParameterGroup"):
        if logical_id not in enforcing:
            findings.append(Finding(logical_id, "parameter group does not set rds.force_ssl=1"))
    for logical_id, instance in resources(template, "AWS::RDS::DBInstance"):
        props = props_of(instance)
        if not str(props.get("Engine", "")).startswith("postgres"):
            continue
        group_ref = props.get("DBParameterGroupName")
        if not (isinstance(group_ref, dict) and group_ref.get("Ref") in enforcing):
            findings.append(
                Finding(
                    logical_id, "instance does not use a parameter group that sets rds.force_ssl=1"
                )
            )
    return findings
