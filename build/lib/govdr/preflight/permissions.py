"""The IAM actions CloudFormation calls to create the resource types of a template.

Every resource type's provider schema lists them under ``handlers.create.permissions``
(https://docs.aws.amazon.com/cloudformation-cli/latest/userguide/resource-type-schema.html);
cfn-lint ships those schemas per region, refreshed with each release. Custom resources have
no schema: CloudFormation invokes their Lambda function, which needs lambda:InvokeFunction
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/template-custom-resources-lambda.html).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

CUSTOM_RESOURCE_ACTIONS = ("lambda:InvokeFunction",)


class SchemaMissing(LookupError):
    """No provider schema for a resource type in the region."""


@cache
def _provider_index(region: str) -> dict[str, str]:
    schemas = resources.files("cfnlint.data.schemas")
    index = schemas / "providers" / f"{region}.json"
    if not index.is_file():
        index = schemas / "providers" / "us-east-1.json"
    loaded: dict[str, str] = json.loads(index.read_text())
    return loaded


@cache
def _schema(digest: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (resources.files("cfnlint.data.schemas") / "resources" / f"{digest}.json").read_text()
    )
    return loaded


def create_actions(resource_type: str, region: str) -> list[str]:
    """The actions CloudFormation needs to create ``resource_type`` in ``region``."""
    if (
        resource_type.startswith("Custom::")
        or resource_type == "AWS::CloudFormation::CustomResource"
    ):
        return list(CUSTOM_RESOURCE_ACTIONS)
    digest = _provider_index(region).get(resource_type)
    if digest is None:
        raise SchemaMissing(resource_type)
    permissions = _schema(digest).get("handlers", {}).get("create", {}).get("permissions", [])
    return sorted({str(p) for p in permissions})


def deploy_actions(
    resource_types: list[str], region: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Action -> the resource types that need it, and the types without a schema."""
    needed: dict[str, list[str]] = {}
    missing = []
    for resource_type in resource_types:
        try:
            actions = create_actions(resource_type, region)
        except SchemaMissing:
            missing.append(resource_type)
            continue
        for action in actions:
            needed.setdefault(action, []).append(resource_type)
    return dict(sorted(needed.items())), missing
