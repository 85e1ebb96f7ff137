"""What the services that use govdr's keys need from the key policies, as AWS documents it.

Every resource of the synthesis that names a key (a log group, the trail and its bucket, the
alarm topic, the database and its Performance Insights, the secrets, the file system, the
backup vault) yields the requests its service makes to KMS, with the principal, the action
and the request context (encryption context, aws:SourceArn, kms:ViaService,
kms:CallerAccount) that AWS documents for them, each with its documentation URL. Each
request is evaluated against the synthesized key policy (govdr.compliance.policy_eval);
a request the policy does not allow, or a policy the evaluator cannot read, is a finding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.policies import ACCOUNT, PARTITION, REGION, Resolver, Template
from govdr.compliance.policy_eval import ContextValue, Request, UnsupportedPolicy, evaluate

RULE = "key-requirements"
FIX = (
    "give the service the statement its AWS page documents (principal, actions, and only "
    "conditions its requests carry) through ServiceKey in govdr/stacks/security.py"
)


# The principal of this account that creates and uses resources through a service
# (a deploying or operating role); via-service statements name every such principal.
ACCOUNT_ROLE = f"arn:{PARTITION}:iam::{ACCOUNT}:role/govdr-operator"

LOGS_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html"
CLOUDTRAIL_DOC = (
    "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/"
    "create-kms-key-policy-for-cloudtrail.html"
)
S3_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html"
SNS_DOC = (
    "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#sns-what-permissions-for-sse"
)
RDS_DOC = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Overview.Encryption.Keys.html"
PI_DOC = (
    "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/"
    "USER_PerfInsights.access-control.cmk-policy.html"
)
SECRETS_DOC = "https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html"
EFS_DOC = "https://docs.aws.amazon.com/efs/latest/ug/encryption-at-rest.html"
BACKUP_DOC = "https://docs.aws.amazon.com/aws-backup/latest/devguide/encryption.html"

# Who publishes to an SNS topic, by the resource that names the topic.
SNS_PUBLISHERS = {
    "AWS::CloudWatch::Alarm": "cloudwatch.amazonaws.com",
    "AWS::Events::Rule": "events.amazonaws.com",
    "AWS::RDS::EventSubscription": "events.rds.amazonaws.com",
}


@dataclass(frozen=True)
class KeyRequirement:
    """One request a service makes to a key, as AWS documents it."""

    service: str
    user: str  # logical ID of the resource that uses the key
    key: str  # logical ID of the key
    request: Request
    doc: str


def _via(service: str) -> dict[str, ContextValue]:
    return {"kms:ViaService": f"{service}.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT}


class _Synthesis:
    def __init__(self, templates: Mapping[str, Template]) -> None:
        self.templates = templates
        self.resolver = Resolver(templates)
        self.keys: dict[str, tuple[str, str]] = {}
        for name, template in templates.items():
            for lid, resource in template.get("Resources", {}).items():
                if resource.get("Type") == "AWS::KMS::Key":
                    self.keys[lid.lower()] = (name, lid)

    def resources(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for name, template in self.templates.items():
            for lid, resource in template.get("Resources", {}).items():
                yield name, lid, resource

    def value(self, template: str, raw: Any) -> Any:
        return self.resolver.resolve(template, raw)

    def key_of(self, template: str, raw: Any) -> str | None:
        """Logical ID of the synthesized key that ``raw`` (an ID or ARN reference) names."""
        resolved = str(self.value(template, raw))
        found = self.keys.get(resolved.rsplit("/", 1)[-1].lower())
        return found[1] if found else None


Builder = Callable[[_Synthesis, str, str, dict[str, Any]], list[tuple[str, str, Request, str]]]


def _request(
    principal_type: str, principal: str, action: str, context: Mapping[str, ContextValue]
) -> Request:
    return Request(principal_type, principal, action, "KEY", dict(context))


def _logs(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    name = syn.value(template, props["LogGroupName"]) if "LogGroupName" in props else lid
    arn = f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}"
    context = {"kms:EncryptionContext:aws:logs:arn": arn}
    principal = f"logs.{REGION}.amazonaws.com"
    actions = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo")
    return [
        ("KmsKeyId", "CloudWatch Logs", _request("Service", principal, action, context), LOGS_DOC)
        for action in (*actions, "kms:GenerateDataKey")
    ]


def _trail(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    name = syn.value(template, props.get("TrailName", lid))
    arn = f"arn:{PARTITION}:cloudtrail:{REGION}:{ACCOUNT}:trail/{name}"
    source = {"aws:SourceArn": arn}
    ct = "cloudtrail.amazonaws.com"
    found = [
        (
            "KMSKeyId",
            "CloudTrail",
            _request(
                "Service",
                ct,
                "kms:GenerateDataKey",
                {**source, "kms:EncryptionContext:aws:cloudtrail:arn": arn},
            ),
            CLOUDTRAIL_DOC,
        ),
        # DescribeKey carries no encryption context, only the trail as source.
        (
            "KMSKeyId",
            "CloudTrail",
            _request("Service", ct, "kms:DescribeKey", source),
            CLOUDTRAIL_DOC,
        ),
    ]
    bucket_ref = props.get("S3BucketName")
    bucket_id = bucket_ref.get("Ref", "") if isinstance(bucket_ref, dict) else ""
    bucket = syn.templates[template].get("Resources", {}).get(bucket_id, {})
    rules = bucket.get("Properties", {}).get("BucketEncryption", {})
    if any(r.get("BucketKeyEnabled") for r in rules.get("ServerSideEncryptionConfiguration", [])):
        # With an S3 Bucket Key, CloudTrail needs kms:Decrypt to create or update the trail.
        found.append(
            (
                "KMSKeyId",
                "CloudTrail",
                _request("Service", ct, "kms:Decrypt", source),
                CLOUDTRAIL_DOC,
            )
        )
    return found


def _bucket(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    found = []
    for rule in props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
        default = rule.get("ServerSideEncryptionByDefault", {})
        if default.get("SSEAlgorithm") != "aws:kms" or "KMSMasterKeyID" not in default:
            continue
        context = {
            **_via("s3"),
            "kms:EncryptionContext:aws:s3:arn": f"arn:{PARTITION}:s3:::{lid.lower()}",
        }
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            request = _request("AWS", ACCOUNT_ROLE, action, context)
            found.append(("KMSMasterKeyID", "S3 (SSE-KMS)", request, S3_DOC))
    return found


def _topic(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    topic_arn = syn.value(template, {"Ref": lid})
    publishers = set()
    for name, _, resource in syn.resources():
        principal = SNS_PUBLISHERS.get(str(resource.get("Type")))
        if principal and topic_arn in str(syn.value(name, resource.get("Properties", {}))):
            publishers.add(principal)
    return [
        ("KmsMasterKeyId", f"SNS publisher {p}", _request("Service", p, action, {}), SNS_DOC)
        for p in sorted(publishers)
        for action in ("kms:GenerateDataKey", "kms:Decrypt")
    ]


def _database(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    found: list[Any] = []
    if "KmsKeyId" in props:
        for action in ("kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:GenerateDataKey"):
            request = _request("AWS", ACCOUNT_ROLE, action, _via("rds"))
            found.append(("KmsKeyId", "RDS", request, RDS_DOC))
    if "PerformanceInsightsKMSKeyId" in props:
        context = {
            **_via("rds"),
            "kms:EncryptionContext:aws:pi:service": "rds",
            "kms:EncryptionContext:service": "pi",
            "kms:EncryptionContext:aws:rds:db-id": f"db-{lid.lower()}",
        }
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            request = _request("AWS", ACCOUNT_ROLE, action, context)
            found.append(("PerformanceInsightsKMSKeyId", "Performance Insights", request, PI_DOC))
    return found


def _secret(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    context = {
        **_via("secretsmanager"),
        "kms:EncryptionContext:SecretARN": syn.value(template, {"Ref": lid}),
    }
    return [
        ("KmsKeyId", "Secrets Manager", _request("AWS", ACCOUNT_ROLE, action, context), SECRETS_DOC)
        for action in ("kms:GenerateDataKey", "kms:Decrypt")
    ]


def _file_system(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    actions = (
        "kms:CreateGrant",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:GenerateDataKeyWithoutPlaintext",
    )
    return [
        (
            "KmsKeyId",
            "EFS",
            _request("AWS", ACCOUNT_ROLE, action, _via("elasticfilesystem")),
            EFS_DOC,
        )
        for action in actions
    ]


def _vault(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    roles = sorted(
        {
            str(syn.value(name, resource["Properties"]["BackupSelection"]["IamRoleArn"]))
            for name, _, resource in syn.resources()
            if resource.get("Type") == "AWS::Backup::BackupSelection"
        }
    ) or [ACCOUNT_ROLE]
    return [
        (
            "EncryptionKeyArn",
            "AWS Backup",
            _request("AWS", role, action, _via("backup")),
            BACKUP_DOC,
        )
        for role in roles
        for action in ("kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:GenerateDataKey")
    ]


TXLOG_INTEGRITY_DOC = "https://docs.aws.amazon.com/kms/latest/developerguide/encrypt_context.html"
INTEGRITY_KEY_ENV = "INTEGRITY_KEY_ARN"


def _archiver(syn: _Synthesis, template: str, lid: str, props: dict[str, Any]) -> list[Any]:
    """The archiver generates its archive's data key and decrypts it at each run, with the
    archive's identity as encryption context (govdr/txlog/runtime/integrity.py)."""
    from govdr.txlog.runtime.integrity import CONTEXT_PREFIX, IDENTITY_KEYS

    variables = props.get("Environment", {}).get("Variables", {})
    if INTEGRITY_KEY_ENV not in variables:
        return []
    slot = str(syn.value(template, variables.get("SLOT_NAME", "")))
    context: dict[str, ContextValue] = {
        "kms:CallerAccount": ACCOUNT,
        "kms:EncryptionContextKeys": [f"{CONTEXT_PREFIX}{k}" for k in IDENTITY_KEYS],
        f"kms:EncryptionContext:{CONTEXT_PREFIX}slot": slot,
        f"kms:EncryptionContext:{CONTEXT_PREFIX}system_identifier": "7300000000000000001",
        f"kms:EncryptionContext:{CONTEXT_PREFIX}timeline": "1",
        f"kms:EncryptionContext:{CONTEXT_PREFIX}database": "govdr",
    }
    return [
        (
            INTEGRITY_KEY_ENV,
            "transaction-log archiver",
            _request("AWS", ACCOUNT_ROLE, action, context),
            TXLOG_INTEGRITY_DOC,
        )
        for action in ("kms:GenerateDataKey", "kms:Decrypt")
    ]


BUILDERS: dict[str, Builder] = {
    "AWS::Lambda::Function": _archiver,
    "AWS::Logs::LogGroup": _logs,
    "AWS::CloudTrail::Trail": _trail,
    "AWS::S3::Bucket": _bucket,
    "AWS::SNS::Topic": _topic,
    "AWS::RDS::DBInstance": _database,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::EFS::FileSystem": _file_system,
    "AWS::Backup::BackupVault": _vault,
}


def _key_property(props: dict[str, Any], prop: str) -> Any:
    if prop == INTEGRITY_KEY_ENV:
        return props.get("Environment", {}).get("Variables", {}).get(prop)
    if prop == "KMSMasterKeyID":
        for rule in props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
            default = rule.get("ServerSideEncryptionByDefault", {})
            if "KMSMasterKeyID" in default:
                return default["KMSMasterKeyID"]
        return None
    return props.get(prop)


def key_requirements(
    templates: Mapping[str, Template],
) -> tuple[list[KeyRequirement], list[Finding]]:
    """Every documented request to a synthesized key, and findings for key references that
    name no key of the synthesis."""
    syn = _Synthesis(templates)
    requirements: list[KeyRequirement] = []
    findings: list[Finding] = []
    for name, lid, resource in syn.resources():
        builder = BUILDERS.get(str(resource.get("Type")))
        props = resource.get("Properties", {})
        if builder is None or not isinstance(props, dict):
            continue
        for prop, service, request, doc in builder(syn, name, lid, props):
            raw = _key_property(props, prop)
            if raw is None:
                continue
            key = syn.key_of(name, raw)
            if key is None:
                findings.append(Finding(lid, f"{prop} names a key that is not in the synthesis"))
                continue
            requirements.append(KeyRequirement(service, lid, key, request, doc))
    return requirements, list(dict.fromkeys(findings))


def key_requirement_findings(templates: Mapping[str, Template]) -> list[Finding]:
    """One finding per documented request that the synthesized key policy does not allow."""
    syn = _Synthesis(templates)
    requirements, findings = key_requirements(templates)
    for requirement in requirements:
        template, key = syn.keys[requirement.key.lower()]
        key_resource = templates[template]["Resources"][key]
        policy = syn.value(template, key_resource.get("Properties", {}).get("KeyPolicy", {}))
        request = Request(
            requirement.request.principal_type,
            requirement.request.principal,
            requirement.request.action,
            f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{key.lower()}",
            requirement.request.context,
        )
        try:
            decision = evaluate(policy, request)
        except UnsupportedPolicy as error:
            findings.append(
                Finding(
                    key,
                    f"the key policy uses {error}, which the key-policy evaluator does not "
                    f"model, so {requirement.service} ({requirement.user}) cannot be shown to "
                    "be allowed; use the operators of "
                    "govdr.compliance.policy_eval.SUPPORTED_OPERATORS",
                )
            )
            continue
        if not decision.allowed:
            findings.append(
                Finding(
                    key,
                    f"{requirement.service} ({requirement.user}) needs "
                    f"{request.describe()}: {decision.reason} (see {requirement.doc})",
                )
            )
    return list(dict.fromkeys(findings))
