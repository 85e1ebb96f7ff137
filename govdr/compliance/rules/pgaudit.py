"""The gate rule ``pgaudit``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)
from govdr.engine import CONNECTION_LOGGING, major_of_family

RULE = "pgaudit"
FIX = (
    "keep pgaudit in the parameter group and connection logging from "
    "govdr.engine.connection_logging for the engine major"
)


def pgaudit_findings(template: Template) -> list[Finding]:
    """PostgreSQL parameter groups load pgaudit and log DDL, role and write statements."""
    findings = []
    for logical_id, group in resources(template, "AWS::RDS::DBParameterGroup"):
        params = props_of(group).get("Parameters", {})
        libraries = str(params.get("shared_preload_libraries", "")).split(",")
        if "pgaudit" not in [lib.strip() for lib in libraries]:
            findings.append(Finding(logical_id, "pgaudit is not in shared_preload_libraries"))
        logged = {c.strip() for c in str(params.get("pgaudit.log", "")).split(",")}
        missing = set() if "all" in logged else {"ddl", "role", "write"} - logged
        if missing:
            findings.append(
                Finding(logical_id, f"pgaudit.log does not cover {', '.join(sorted(missing))}")
            )
        major = major_of_family(str(props_of(group).get("Family", "")))
        if major is None or major not in CONNECTION_LOGGING:
            findings.append(
                Finding(logical_id, f"family {props_of(group).get('Family')!r} is not known")
            )
            continue
        for param, value in CONNECTION_LOGGING[major].items():
            if str(params.get(param)) != value:
                findings.append(
                    Finding(
                        logical_id,
                        f"{param} is {params.get(param)!r}, "
                        f"PostgreSQL {major} logs connections with {value!r}",
                    )
                )
    return findings
