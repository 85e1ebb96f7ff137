"""What a deploy of a synthesized TapStack will ask of the account: read from ``cdk.out``.

The templates are the truth of what CloudFormation will create, so preflight reads its facts
from them (and from the cloud assembly's manifest), not from a second copy of the config.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govdr.config import REGION

# What `cdk bootstrap` names by default (its qualifier is hnb659fds):
# https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-env.html
DEFAULT_BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"


class PlanError(ValueError):
    """The cloud assembly cannot be read; the message says what to do."""


@dataclass(frozen=True)
class Database:
    logical_id: str
    engine: str
    engine_version: str
    instance_class: str
    storage_type: str
    multi_az: bool


@dataclass(frozen=True)
class ParameterGroup:
    logical_id: str
    family: str
    parameters: dict[str, str]


@dataclass
class Plan:
    """The facts of one synthesized stack (root and nested templates) that preflight checks."""

    stack_name: str
    region: str
    templates: dict[str, dict[str, Any]]
    manifest: dict[str, Any] = field(default_factory=dict)

    # --- the CDK bootstrap -------------------------------------------------------------
    @property
    def bootstrap_parameter(self) -> str:
        """The SSM parameter the root template's BootstrapVersion parameter reads."""
        root = self.templates[self.root_file]
        default = root.get("Parameters", {}).get("BootstrapVersion", {}).get("Default")
        return str(default or self.manifest.get("bootstrapStackVersionSsmParameter") or "")

    @property
    def required_bootstrap_version(self) -> int | None:
        """The least bootstrap version the template's CheckBootstrapVersion rule accepts.

        The CDK writes the rule as ``Fn::Not [Fn::Contains [[versions too old], Ref]]``
        (https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-env.html#bootstrapping-env-templates):
        the first version not listed is the least one accepted.
        """
        rule = self.templates[self.root_file].get("Rules", {}).get("CheckBootstrapVersion")
        if not rule:
            required = self.manifest.get("requiresBootstrapStackVersion")
            return int(required) if required is not None else None
        rejected: set[int] = set()
        for assertion in rule.get("Assertions", []):
            for contains in assertion.get("Assert", {}).get("Fn::Not", []):
                listed = contains.get("Fn::Contains", [[]])[0] if isinstance(contains, dict) else []
                rejected.update(int(v) for v in listed if str(v).isdigit())
        if not rejected:
            return None
        return max(rejected) + 1

    def role_arn(self, key: str, account: str, partition: str = "aws") -> str | None:
        """A role of the bootstrap named in the manifest (assumeRoleArn, ...), resolved."""
        raw = self.manifest.get(key)
        if not isinstance(raw, str):
            return None
        return (
            raw.replace("${AWS::Partition}", partition)
            .replace("${AWS::AccountId}", account)
            .replace("${AWS::Region}", self.region)
        )

    # --- resources ----------------------------------------------------------------------
    @property
    def root_file(self) -> str:
        return f"{self.stack_name}.template.json"

    def resources(self, resource_type: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for template in self.templates.values():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource_type is None or resource.get("Type") == resource_type:
                    found.append((logical_id, resource))
        return found

    @property
    def resource_types(self) -> list[str]:
        return sorted({str(r.get("Type")) for _, r in self.resources()})

    @property
    def reserved_concurrency(self) -> int:
        return sum(
            int(r.get("Properties", {}).get("ReservedConcurrentExecutions", 0))
            for _, r in self.resources("AWS::Lambda::Function")
        )

    @property
    def availability_zones(self) -> list[str]:
        zones = {
            self.resolve(r.get("Properties", {}).get("AvailabilityZone"))
            for _, r in self.resources("AWS::EC2::Subnet")
        }
        return sorted(z for z in zones if z)

    @property
    def databases(self) -> list[Database]:
        found = []
        for logical_id, resource in self.resources("AWS::RDS::DBInstance"):
            props = resource.get("Properties", {})
            found.append(
                Database(
                    logical_id=logical_id,
                    engine=str(props.get("Engine", "")),
                    engine_version=str(props.get("EngineVersion", "")),
                    instance_class=str(props.get("DBInstanceClass", "")),
                    # without StorageType (and Iops) RDS creates gp3 ("Default: io1, if the
                    # Iops parameter is specified. Otherwise, gp3."):
                    # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html
                    storage_type=str(
                        props.get("StorageType", "io1" if props.get("Iops") else "gp3")
                    ),
                    multi_az=str(props.get("MultiAZ", False)).lower() == "true",
                )
            )
        return found

    @property
    def parameter_groups(self) -> list[ParameterGroup]:
        return [
            ParameterGroup(
                logical_id=logical_id,
                family=str(r.get("Properties", {}).get("Family", "")),
                parameters={
                    str(k): str(v) for k, v in r.get("Properties", {}).get("Parameters", {}).items()
                },
            )
            for logical_id, r in self.resources("AWS::RDS::DBParameterGroup")
        ]

    @property
    def interface_endpoint_services(self) -> dict[str, str]:
        """Service name -> logical ID of every interface VPC endpoint."""
        return {
            self.resolve(r.get("Properties", {}).get("ServiceName")): logical_id
            for logical_id, r in self.resources("AWS::EC2::VPCEndpoint")
            if r.get("Properties", {}).get("VpcEndpointType") == "Interface"
        }

    @property
    def creates_trail(self) -> bool:
        return bool(self.resources("AWS::CloudTrail::Trail"))

    @property
    def existing_trail_arn(self) -> str | None:
        """The trail the root names as its TrailArn output when it creates none."""
        if self.creates_trail:
            return None
        value = self.templates[self.root_file].get("Outputs", {}).get("TrailArn", {}).get("Value")
        return value if isinstance(value, str) else None

    def resolve(self, value: Any) -> str:
        """A string property with Ref to pseudo parameters and Fn::Join resolved."""
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "Ref" in value:
            return {"AWS::Region": self.region, "AWS::URLSuffix": "amazonaws.com"}.get(
                value["Ref"], ""
            )
        if isinstance(value, dict) and "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return str(separator).join(self.resolve(p) for p in parts)
        return ""


def _read_json(file: Path) -> dict[str, Any]:
    """One JSON object of the cloud assembly; a file that cannot be read is a PlanError."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PlanError(
            f"{file} cannot be read as JSON ({reason}): the cloud assembly is damaged; run "
            "`make synth SUFFIX=<suffix>` again"
        ) from None
    if not isinstance(value, dict):
        raise PlanError(
            f"{file} holds a JSON {type(value).__name__}, not an object: the cloud assembly is "
            "damaged; run `make synth SUFFIX=<suffix>` again"
        )
    return value


_ENV_RE = re.compile(r"^aws://[^/]+/(?P<region>[a-z0-9-]+)$")


def load_plan(assembly: Path, stack_name: str, region: str | None = None) -> Plan:
    """Read the stack's templates (root and nested) from a synthesized cloud assembly."""
    manifest_file = assembly / "manifest.json"
    if not manifest_file.is_file():
        raise PlanError(
            f"{assembly} holds no cloud assembly (no manifest.json): run `make synth "
            "SUFFIX=<suffix>` first, or pass --cdk-out DIR"
        )
    artifacts = _read_json(manifest_file).get("artifacts", {})
    if not isinstance(artifacts, dict) or not all(isinstance(a, dict) for a in artifacts.values()):
        raise PlanError(
            f"{manifest_file} has no object of artifacts: the cloud assembly is damaged; run "
            "`make synth SUFFIX=<suffix>` again"
        )
    artifact = artifacts.get(stack_name)
    if not artifact or artifact.get("type") != "aws:cloudformation:stack":
        known = sorted(
            k for k, a in artifacts.items() if a.get("type") == "aws:cloudformation:stack"
        )
        raise PlanError(
            f"{stack_name} is not in {assembly} (stacks there: {', '.join(known) or 'none'}); "
            f"synthesize it with `make synth SUFFIX=<suffix>` or pass the suffix it was "
            "synthesized with (--suffix or --stack)"
        )
    match = _ENV_RE.match(str(artifact.get("environment", "")))
    target_region = region or (
        match["region"] if match and match["region"] != "unknown-region" else None
    )
    if not target_region:
        target_region = REGION
    properties = artifact.get("properties", {})
    root_file = properties.get("templateFile", f"{stack_name}.template.json")
    templates: dict[str, dict[str, Any]] = {}
    # The nested templates are file assets of the stack (``cdk deploy`` publishes them).
    assets_file = assembly / f"{stack_name}.assets.json"
    nested: list[str] = []
    if assets_file.is_file():
        files = _read_json(assets_file).get("files", {})
        if not isinstance(files, dict) or not all(isinstance(a, dict) for a in files.values()):
            raise PlanError(
                f"{assets_file} has no object of files: the cloud assembly is damaged; run "
                "`make synth SUFFIX=<suffix>` again"
            )
        for asset in files.values():
            source = str(asset.get("source", {}).get("path", ""))
            if source.endswith(".nested.template.json"):
                nested.append(source)
    for name in [str(root_file), *sorted(nested)]:
        file = assembly / name
        if not file.is_file():
            raise PlanError(f"{file} is missing from the cloud assembly: synthesize again")
        templates[name] = _read_json(file)
    plan = Plan(stack_name=stack_name, region=target_region, templates=templates)
    plan.manifest = dict(properties)
    return plan
