"""The gate rule ``engine-version``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)

RULE = "engine-version"
FIX = (
    "give engineVersion as a major alone (18), or pin MAJOR.MINOR with automatic minor "
    "upgrades off (DrConfig.pins_minor_version)"
)


def engine_version_findings(template: Template) -> list[Finding]:
    """An instance that pins a minor version does not also take automatic minor upgrades: after
    RDS upgrades the minor, the template's older one is a downgrade request on the next update
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_UpgradeDBInstance.Upgrading.html)."""
    findings = []
    for logical_id, instance in resources(template, "AWS::RDS::DBInstance"):
        props = props_of(instance)
        version = str(props.get("EngineVersion", ""))
        if "." in version and props.get("AutoMinorVersionUpgrade", True) in (True, "true"):
            findings.append(
                Finding(
                    logical_id,
                    f"EngineVersion {version} pins a minor while AutoMinorVersionUpgrade is on",
                )
            )
    return findings
