"""Every IAM policy document in a synthesis, with its CloudFormation intrinsics resolved.

Identity policies (``AWS::IAM::Policy``, ``AWS::IAM::ManagedPolicy``, a role's inline
``Policies``), key policies and resource policies (bucket, topic, file system, backup vault,
secret, log resource policies, trust policies and Lambda permissions) are collected from the
root and every nested template. ``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub`` and the
other intrinsics are replaced by placeholder values of the shape the real value has (an ARN
of the right service and resource type, a name, an ID), following nested-stack parameters
back to the output of the stack that defines them, so that a linter or an evaluator can
read each document as AWS will after deployment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

PARTITION = "aws"
REGION = "eu-central-2"
ACCOUNT = "123456789012"
URL_SUFFIX = "amazonaws.com"

Template = dict[str, Any]
Document = dict[str, Any]

# Pseudo parameters:
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/pseudo-parameter-reference.html
PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": URL_SUFFIX,
    "AWS::StackName": "TapStack",
    "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/TapStack/id",
    "AWS::NoValue": None,
}
_ARN = f"arn:{PARTITION}:{{service}}:{REGION}:{ACCOUNT}:{{resource}}"

# What Ref and Fn::GetAtt return per resource type (the "Return values" section of each
# resource's page in https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/),
# as templates over the logical ID ({id}, lower-cased: {lid}).
REF_SHAPES: dict[str, str] = {
    "AWS::SNS::Topic": _ARN.format(service="sns", resource="{id}"),
    "AWS::SecretsManager::Secret": _ARN.format(
        service="secretsmanager", resource="secret:{id}-AbCdEf"
    ),
    # Ref of a target attachment is the ARN of its secret.
    "AWS::SecretsManager::SecretTargetAttachment": _ARN.format(
        service="secretsmanager", resource="secret:{id}-AbCdEf"
    ),
    "AWS::IAM::ManagedPolicy": f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{{id}}",
    "AWS::EC2::VPCEndpoint": "vpce-{lid}",
    "AWS::EC2::VPC": "vpc-{lid}",
    "AWS::EC2::SecurityGroup": "sg-{lid}",
    "AWS::EC2::Subnet": "subnet-{lid}",
    "AWS::EFS::FileSystem": "fs-{lid}",
    "AWS::EFS::AccessPoint": "fsap-{lid}",
    "AWS::KMS::Key": "{lid}",
}
GETATT_SHAPES: dict[tuple[str, str], str] = {
    ("AWS::KMS::Key", "Arn"): _ARN.format(service="kms", resource="key/{lid}"),
    ("AWS::Logs::LogGroup", "Arn"): _ARN.format(service="logs", resource="log-group:{id}:*"),
    ("AWS::S3::Bucket", "Arn"): f"arn:{PARTITION}:s3:::{{lid}}",
    ("AWS::SNS::Topic", "TopicArn"): _ARN.format(service="sns", resource="{id}"),
    ("AWS::IAM::Role", "Arn"): f"arn:{PARTITION}:iam::{ACCOUNT}:role/{{id}}",
    ("AWS::Lambda::Function", "Arn"): _ARN.format(service="lambda", resource="function:{id}"),
    ("AWS::Events::Rule", "Arn"): _ARN.format(service="events", resource="rule/{id}"),
    ("AWS::EFS::FileSystem", "Arn"): _ARN.format(
        service="elasticfilesystem", resource="file-system/fs-{lid}"
    ),
    ("AWS::EFS::AccessPoint", "Arn"): _ARN.format(
        service="elasticfilesystem", resource="access-point/fsap-{lid}"
    ),
    ("AWS::Backup::BackupVault", "BackupVaultArn"): _ARN.format(
        service="backup", resource="backup-vault:{id}"
    ),
    ("AWS::CloudTrail::Trail", "Arn"): _ARN.format(service="cloudtrail", resource="trail/{id}"),
    ("AWS::RDS::DBInstance", "DBInstanceArn"): _ARN.format(service="rds", resource="db:{lid}"),
    ("AWS::RDS::DBInstance", "DbiResourceId"): "db-{lid}",
}


@dataclass(frozen=True)
class PolicyDocumentRef:
    """One policy document: where it sits and what it says (intrinsics resolved)."""

    template: str
    logical_id: str
    resource_type: str
    where: str  # the property path, e.g. "KeyPolicy" or "Policies[0].PolicyDocument"
    kind: str  # "identity", "key", "resource" or "trust"
    document: Document


class Resolver:
    """Resolves intrinsics in one template of a synthesis, across nested-stack parameters."""

    def __init__(self, templates: Mapping[str, Template]) -> None:
        self._templates = templates
        self._outputs: dict[str, tuple[str, Any]] = {}
        self._parameters: dict[str, tuple[str, Any]] = {}
        for name, template in templates.items():
            for output_id, output in template.get("Outputs", {}).items():
                self._outputs[output_id] = (name, output.get("Value"))
            for resource in template.get("Resources", {}).values():
                if resource.get("Type") != "AWS::CloudFormation::Stack":
                    continue
                for param, value in resource.get("Properties", {}).get("Parameters", {}).items():
                    self._parameters[param] = (name, value)

    def resolve(self, template: str, value: Any, depth: int = 0) -> Any:
        """``value`` of ``template`` with every intrinsic replaced by a placeholder."""
        if depth > 20:
            return "unresolved"
        if isinstance(value, list):
            return [self.resolve(template, item, depth) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            intrinsic = self._INTRINSICS.get(fn)
            if intrinsic is not None:
                return intrinsic(self, template, arg, depth)
        return {key: self.resolve(template, item, depth) for key, item in value.items()}

    def _fn_ref(self, template: str, arg: Any, depth: int) -> Any:
        return self._ref(template, str(arg), depth)

    def _fn_getatt(self, template: str, arg: Any, depth: int) -> Any:
        parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
        return self._getatt(template, str(parts[0]), str(parts[1]), depth)

    def _fn_join(self, template: str, arg: Any, depth: int) -> Any:
        sep, items = arg
        resolved = self.resolve(template, items, depth + 1)
        return str(sep).join(str(item) for item in _flat(resolved))

    def _fn_select(self, template: str, arg: Any, depth: int) -> Any:
        index, items = self.resolve(template, arg, depth + 1)
        return _flat(items)[int(index)]

    def _fn_split(self, template: str, arg: Any, depth: int) -> Any:
        sep, text = self.resolve(template, arg, depth + 1)
        return str(text).split(str(sep))

    def _fn_if(self, template: str, arg: Any, depth: int) -> Any:
        return self.resolve(template, arg[1], depth + 1)

    def _fn_import_value(self, template: str, arg: Any, depth: int) -> Any:
        return _ARN.format(service="imported", resource="value")

    def _fn_get_azs(self, template: str, arg: Any, depth: int) -> Any:
        return [f"{REGION}{zone}" for zone in "abc"]

    _INTRINSICS: ClassVar[dict[str, Callable[[Resolver, str, Any, int], Any]]] = {
        "Ref": _fn_ref,
        "Fn::GetAtt": _fn_getatt,
        "Fn::Join": _fn_join,
        "Fn::Sub": lambda self, template, arg, depth: self._sub(template, arg, depth),
        "Fn::Select": _fn_select,
        "Fn::Split": _fn_split,
        "Fn::If": _fn_if,
        "Fn::ImportValue": _fn_import_value,
        "Fn::GetAZs": _fn_get_azs,
    }

    def _ref(self, template: str, name: str, depth: int) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        resources = self._templates[template].get("Resources", {})
        if name in resources:
            rtype = str(resources[name].get("Type", ""))
            return REF_SHAPES.get(rtype, "{lid}").format(id=name, lid=name.lower())
        if name in self._parameters:
            parent, value = self._parameters[name]
            return self.resolve(parent, value, depth + 1)
        default = self._templates[template].get("Parameters", {}).get(name, {}).get("Default")
        return default if default is not None else name.lower()

    def _getatt(self, template: str, logical_id: str, attribute: str, depth: int) -> Any:
        resources = self._templates[template].get("Resources", {})
        resource = resources.get(logical_id, {})
        rtype = str(resource.get("Type", ""))
        if rtype == "AWS::CloudFormation::Stack" and attribute.startswith("Outputs."):
            output = attribute.removeprefix("Outputs.")
            if output in self._outputs:
                child, value = self._outputs[output]
                return self.resolve(child, value, depth + 1)
        shape = GETATT_SHAPES.get((rtype, attribute))
        if shape is None:
            service = rtype.split("::")[1].lower() if rtype.count("::") == 2 else "unknown"
            shape = (
                _ARN.format(service=service, resource="{lid}")
                if attribute.endswith("Arn")
                else "{lid}-" + attribute.lower()
            )
        return shape.format(id=logical_id, lid=logical_id.lower())

    def _sub(self, template: str, arg: Any, depth: int) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        resolved_vars = {k: self.resolve(template, v, depth + 1) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in resolved_vars:
                return str(resolved_vars[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self._getatt(template, logical_id, attribute, depth + 1))
            return str(self._ref(template, name, depth + 1))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))


def _flat(items: Any) -> list[Any]:
    return items if isinstance(items, list) else [items]


def _permission_document(props: dict[str, Any]) -> Document:
    """The resource-policy statement that an ``AWS::Lambda::Permission`` adds to a function.

    https://docs.aws.amazon.com/lambda/latest/dg/access-control-resource-based.html
    """
    principal = props.get("Principal", "")
    key = "Service" if str(principal).endswith(".amazonaws.com") else "AWS"
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {key: principal},
        "Action": props.get("Action"),
        "Resource": props.get("FunctionName"),
    }
    conditions: dict[str, dict[str, Any]] = {}
    if "SourceArn" in props:
        conditions["ArnLike"] = {"aws:SourceArn": props["SourceArn"]}
    if "SourceAccount" in props:
        conditions["StringEquals"] = {"aws:SourceAccount": props["SourceAccount"]}
    if conditions:
        statement["Condition"] = conditions
    return {"Version": "2012-10-17", "Statement": [statement]}


# Where each resource type keeps its policy documents, and what kind they are.
POLICY_PROPERTIES: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::IAM::Policy": (("PolicyDocument", "identity"),),
    "AWS::IAM::ManagedPolicy": (("PolicyDocument", "identity"),),
    "AWS::KMS::Key": (("KeyPolicy", "key"),),
    "AWS::S3::BucketPolicy": (("PolicyDocument", "resource"),),
    "AWS::SNS::TopicPolicy": (("PolicyDocument", "resource"),),
    "AWS::SQS::QueuePolicy": (("PolicyDocument", "resource"),),
    "AWS::EFS::FileSystem": (("FileSystemPolicy", "resource"),),
    "AWS::Backup::BackupVault": (("AccessPolicy", "resource"),),
    "AWS::SecretsManager::ResourcePolicy": (("ResourcePolicy", "resource"),),
    "AWS::Logs::ResourcePolicy": (("PolicyDocument", "resource"),),
}


def _documents_of(rtype: str, props: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    for prop, kind in POLICY_PROPERTIES.get(rtype, ()):
        if prop in props:
            yield prop, kind, props[prop]
    if rtype == "AWS::IAM::Role":
        if "AssumeRolePolicyDocument" in props:
            yield "AssumeRolePolicyDocument", "trust", props["AssumeRolePolicyDocument"]
        for index, inline in enumerate(props.get("Policies", [])):
            yield f"Policies[{index}].PolicyDocument", "identity", inline.get("PolicyDocument")
    if rtype == "AWS::Lambda::Permission":
        yield "Permission", "resource", _permission_document(props)


def policy_documents(templates: Mapping[str, Template]) -> list[PolicyDocumentRef]:
    """Every policy document of the synthesis, intrinsics resolved, in template order."""
    resolver = Resolver(templates)
    found: list[PolicyDocumentRef] = []
    for name, template in templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            rtype = str(resource.get("Type", ""))
            props = resource.get("Properties", {})
            if not isinstance(props, dict):
                continue
            for where, kind, raw in _documents_of(rtype, props):
                document = resolver.resolve(name, raw)
                if isinstance(document, str):  # some properties take the policy as JSON text
                    document = json.loads(document)
                if isinstance(document, dict):
                    found.append(PolicyDocumentRef(name, logical_id, rtype, where, kind, document))
    return found


def statements(document: Document) -> list[dict[str, Any]]:
    raw = document.get("Statement", [])
    return [s for s in (raw if isinstance(raw, list) else [raw]) if isinstance(s, dict)]
