"""The gate rule ``rotation-order``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    as_list,
    props_of,
    ref_of,
    referenced_ids,
    resources,
)

RULE = "rotation-order"
FIX = (
    "make the secret's rotation schedule DependsOn every custom resource that reads the "
    "secret (node.add_dependency)"
)


def rotation_order_findings(template: Template) -> list[Finding]:
    """A secret's rotation schedule waits for every custom resource that reads the secret.

    Creating a schedule with a rotation function rotates the secret at once
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-secretsmanager-rotationschedule.html);
    a custom resource that reads the secret and logs in with it meanwhile races that rotation.
    """
    all_resources = template.get("Resources", {})
    findings = []
    for logical_id, schedule in resources(template, "AWS::SecretsManager::RotationSchedule"):
        target = ref_of(props_of(schedule).get("SecretId"))
        if target is None:
            continue
        secret_ids = {target}
        attachment = all_resources.get(target, {})
        if attachment.get("Type") == "AWS::SecretsManager::SecretTargetAttachment":
            secret = ref_of(props_of(attachment).get("SecretId"))
            if secret:
                secret_ids.add(secret)
        depends = set(as_list(schedule.get("DependsOn", [])))
        for reader_id, reader in all_resources.items():
            rtype = str(reader.get("Type", ""))
            if not (rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource"):
                continue
            if referenced_ids(props_of(reader)) & secret_ids and reader_id not in depends:
                findings.append(
                    Finding(
                        logical_id,
                        f"rotates {target} while {reader_id} reads it; add DependsOn "
                        f"{reader_id} so that the first rotation starts after it answered",
                    )
                )
    return findings
