"""Checks over synthesized CloudFormation templates for what generic rule packs cannot see.

Each check takes one template (a parsed JSON dict) and returns its findings, one
:class:`~govdr.compliance.finding.Finding` per violation (the logical ID and what is wrong; the
gate adds the rule and its fix). An empty list means the template passes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from govdr.compliance.finding import Finding
from govdr.constructs.policy_notes import WILDCARD_RESOURCE_ACTIONS, WILDCARD_RESOURCE_SIDS
from govdr.engine import CONNECTION_LOGGING, major_of_family
from runtime.txlog_archiver.contract import DRILL_ROLE

Template = dict[str, Any]

STATEFUL_TYPES = frozenset(
    {
        "AWS::RDS::DBInstance",
        "AWS::EFS::FileSystem",
        "AWS::KMS::Key",
        "AWS::SecretsManager::Secret",
        "AWS::Logs::LogGroup",
        "AWS::S3::Bucket",
        "AWS::Backup::BackupVault",
    }
)

# Where each named resource type keeps its physical name.
NAME_PROPERTIES: dict[str, tuple[str, ...]] = {
    "AWS::RDS::DBInstance": ("DBInstanceIdentifier",),
    "AWS::RDS::DBParameterGroup": ("DBParameterGroupName",),
    "AWS::RDS::DBSubnetGroup": ("DBSubnetGroupName",),
    "AWS::SecretsManager::Secret": ("Name",),
    "AWS::KMS::Alias": ("AliasName",),
    "AWS::EC2::SecurityGroup": ("GroupName",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::CloudWatch::Alarm": ("AlarmName",),
    "AWS::CloudWatch::Dashboard": ("DashboardName",),
    "AWS::RDS::EventSubscription": ("SubscriptionName",),
    "AWS::Events::Rule": ("Name",),
    "AWS::CloudTrail::Trail": ("TrailName",),
    "AWS::Backup::BackupVault": ("BackupVaultName",),
    "AWS::Backup::BackupPlan": ("BackupPlan", "BackupPlanName"),
    "AWS::Backup::BackupSelection": ("BackupSelection", "SelectionName"),
    "AWS::Lambda::Function": ("FunctionName",),
}
# Names fixed by the service that writes to them carry the suffix as a path segment.
LOG_GROUP_TYPE = "AWS::Logs::LogGroup"
# Functions that CDK itself adds (custom-resource providers) keep generated names, which
# start with the stack name and so carry the suffix too.
GENERATED_NAME_TYPES = frozenset(
    {"AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::Lambda::Function"}
)
NAME_TAG_TYPES = frozenset(
    {"AWS::EC2::VPC", "AWS::EFS::FileSystem", "AWS::EFS::AccessPoint", "AWS::EC2::FlowLog"}
)


def resources(template: Template, rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == rtype:
            yield logical_id, resource


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    props = resource.get("Properties", {})
    return props if isinstance(props, dict) else {}


def _statements(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def database_tls_findings(template: Template) -> list[Finding]:
    """Every PostgreSQL instance uses a parameter group of this template with rds.force_ssl=1."""
    findings = []
    enforcing = {
        logical_id
        for logical_id, group in resources(template, "AWS::RDS::DBParameterGroup")
        if str(_props(group).get("Parameters", {}).get("rds.force_ssl")) == "1"
    }
    for logical_id, _ in resources(template, "AWS::RDS::DBParameterGroup"):
        if logical_id not in enforcing:
            findings.append(Finding(logical_id, "parameter group does not set rds.force_ssl=1"))
    for logical_id, instance in resources(template, "AWS::RDS::DBInstance"):
        props = _props(instance)
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


def _denies_insecure_transport(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition", {})
    secure = (
        condition.get("Bool", {}).get("aws:SecureTransport")
        if isinstance(condition, dict)
        else None
    )
    return statement.get("Effect") == "Deny" and str(secure).lower() == "false"


def file_system_tls_findings(template: Template) -> list[Finding]:
    """Every EFS file system is encrypted with a CMK and its policy denies non-TLS access."""
    findings = []
    for logical_id, fs in resources(template, "AWS::EFS::FileSystem"):
        props = _props(fs)
        if props.get("Encrypted") is not True or not props.get("KmsKeyId"):
            findings.append(
                Finding(logical_id, "file system is not encrypted with a customer-managed key")
            )
        if not any(
            _denies_insecure_transport(s) for s in _statements(props.get("FileSystemPolicy"))
        ):
            findings.append(
                Finding(
                    logical_id,
                    "file-system policy does not deny access without TLS "
                    "(Deny when aws:SecureTransport is false)",
                )
            )
    return findings


def key_rotation_findings(template: Template) -> list[Finding]:
    """Every KMS key rotates yearly and has a pending-deletion window set."""
    findings = []
    for logical_id, key in resources(template, "AWS::KMS::Key"):
        props = _props(key)
        if props.get("EnableKeyRotation") is not True:
            findings.append(Finding(logical_id, "key rotation is not enabled"))
        if not 7 <= int(props.get("PendingWindowInDays", 30)) <= 30:
            findings.append(Finding(logical_id, "pending window must be 7-30 days"))
    return findings


def destroyability_findings(template: Template) -> list[Finding]:
    """Stateful resources are deleted with the stack; nothing blocks or outlives a teardown."""
    findings = []
    for logical_id, resource in template.get("Resources", {}).items():
        rtype = resource.get("Type")
        policy = resource.get("DeletionPolicy")
        # An RDS instance without DeletionPolicy is snapshotted by CloudFormation, so
        # stateful types need an explicit Delete.
        if rtype in STATEFUL_TYPES and policy != "Delete":
            findings.append(
                Finding(
                    logical_id,
                    f"DeletionPolicy is {policy or 'unset'}, not Delete",
                    resource_type=rtype,
                )
            )
        elif policy not in (None, "Delete"):
            findings.append(
                Finding(logical_id, f"DeletionPolicy is {policy}, not Delete", resource_type=rtype)
            )
        if rtype == "AWS::RDS::DBInstance":
            props = _props(resource)
            if props.get("DeletionProtection") is not False:
                findings.append(Finding(logical_id, "DeletionProtection is not false"))
            if props.get("DeleteAutomatedBackups") is False:
                findings.append(Finding(logical_id, "automated backups would outlive the instance"))
    return findings


def _tag(props: dict[str, Any], key: str, tags_property: str) -> Any:
    tags = props.get(tags_property, [])
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and tag.get("Key") == key:
            return tag.get("Value")
    return None


def _physical_name(rtype: str, props: dict[str, Any]) -> Any:
    if rtype in NAME_PROPERTIES:
        value: Any = props
        for part in NAME_PROPERTIES[rtype]:
            value = value.get(part) if isinstance(value, dict) else None
        return value
    tags_property = "FileSystemTags" if rtype == "AWS::EFS::FileSystem" else "Tags"
    if rtype == "AWS::EFS::AccessPoint":
        tags_property = "AccessPointTags"
    return _tag(props, "Name", tags_property)


def naming_findings(template: Template, suffix: str) -> list[Finding]:
    """Every literal physical name follows ``{resource-type}-{suffix}``."""
    findings = []
    for logical_id, resource in template.get("Resources", {}).items():
        rtype = resource.get("Type", "")
        if rtype == LOG_GROUP_TYPE:
            value = _props(resource).get("LogGroupName")
            carries = re.compile(rf"(^|[-/]){re.escape(suffix)}($|[-/])")
            if not isinstance(value, str) or not carries.search(value):
                findings.append(
                    Finding(
                        logical_id, f"name {value!r} does not carry {suffix}", resource_type=rtype
                    )
                )
            continue
        if rtype not in NAME_PROPERTIES and rtype not in NAME_TAG_TYPES:
            continue
        value = _physical_name(rtype, _props(resource))
        if value is None:
            if rtype not in GENERATED_NAME_TYPES:
                findings.append(Finding(logical_id, "has no physical name", resource_type=rtype))
            continue
        if not isinstance(value, str):
            findings.append(
                Finding(logical_id, "physical name is not a literal", resource_type=rtype)
            )
        elif not value.endswith(f"-{suffix}"):
            findings.append(
                Finding(
                    logical_id, f"name {value!r} does not end with -{suffix}", resource_type=rtype
                )
            )
    return findings


def log_group_findings(template: Template, min_retention_days: int = 365) -> list[Finding]:
    """Every log group is KMS-encrypted and kept at least ``min_retention_days``."""
    findings = []
    for logical_id, group in resources(template, LOG_GROUP_TYPE):
        props = _props(group)
        if not props.get("KmsKeyId"):
            findings.append(Finding(logical_id, "log group is not encrypted with a KMS key"))
        retention = props.get("RetentionInDays")
        if not isinstance(retention, int) or retention < min_retention_days:
            findings.append(
                Finding(
                    logical_id,
                    f"retention {retention or 'unlimited'} days, "
                    f"must be set and >= {min_retention_days}",
                )
            )
    return findings


def open_ingress_findings(template: Template) -> list[Finding]:
    """No security group accepts traffic from the whole internet."""
    findings = []

    def check(logical_id: str, rule: dict[str, Any]) -> None:
        if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0":
            findings.append(Finding(logical_id, "ingress open to the internet"))

    for logical_id, sg in resources(template, "AWS::EC2::SecurityGroup"):
        for rule in as_list(_props(sg).get("SecurityGroupIngress", [])):
            check(logical_id, rule)
    for logical_id, rule in resources(template, "AWS::EC2::SecurityGroupIngress"):
        check(logical_id, _props(rule))
    return findings


def pgaudit_findings(template: Template) -> list[Finding]:
    """PostgreSQL parameter groups load pgaudit and log DDL, role and write statements."""
    findings = []
    for logical_id, group in resources(template, "AWS::RDS::DBParameterGroup"):
        params = _props(group).get("Parameters", {})
        libraries = str(params.get("shared_preload_libraries", "")).split(",")
        if "pgaudit" not in [lib.strip() for lib in libraries]:
            findings.append(Finding(logical_id, "pgaudit is not in shared_preload_libraries"))
        logged = {c.strip() for c in str(params.get("pgaudit.log", "")).split(",")}
        missing = set() if "all" in logged else {"ddl", "role", "write"} - logged
        if missing:
            findings.append(
                Finding(logical_id, f"pgaudit.log does not cover {', '.join(sorted(missing))}")
            )
        major = major_of_family(str(_props(group).get("Family", "")))
        if major is None or major not in CONNECTION_LOGGING:
            findings.append(
                Finding(logical_id, f"family {_props(group).get('Family')!r} is not known")
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


def engine_version_findings(template: Template) -> list[Finding]:
    """An instance that pins a minor version does not also take automatic minor upgrades: after
    RDS upgrades the minor, the template's older one is a downgrade request on the next update
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_UpgradeDBInstance.Upgrading.html)."""
    findings = []
    for logical_id, instance in resources(template, "AWS::RDS::DBInstance"):
        props = _props(instance)
        version = str(props.get("EngineVersion", ""))
        if "." in version and props.get("AutoMinorVersionUpgrade", True) in (True, "true"):
            findings.append(
                Finding(
                    logical_id,
                    f"EngineVersion {version} pins a minor while AutoMinorVersionUpgrade is on",
                )
            )
    return findings


def alarm_action_findings(template: Template) -> list[Finding]:
    """Every alarm notifies on ALARM and on OK."""
    findings = []
    for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm"):
        props = _props(alarm)
        if not props.get("AlarmActions"):
            findings.append(Finding(logical_id, "alarm has no alarm action"))
        if not props.get("OKActions"):
            findings.append(Finding(logical_id, "alarm has no OK action"))
    return findings


def _policy_denies_insecure(
    template: Template, policy_type: str, target_key: str, ref: str
) -> bool:
    for _, policy in resources(template, policy_type):
        props = _props(policy)
        targets = as_list(props.get(target_key))
        if {"Ref": ref} not in targets:
            continue
        if any(_denies_insecure_transport(s) for s in _statements(props.get("PolicyDocument"))):
            return True
    return False


def transport_tls_findings(template: Template) -> list[Finding]:
    """Every S3 bucket and SNS topic has a policy that denies requests without TLS."""
    findings = []
    for logical_id, _ in resources(template, "AWS::S3::Bucket"):
        if not _policy_denies_insecure(template, "AWS::S3::BucketPolicy", "Bucket", logical_id):
            findings.append(Finding(logical_id, "bucket policy does not deny requests without TLS"))
    for logical_id, _ in resources(template, "AWS::SNS::Topic"):
        if not _policy_denies_insecure(template, "AWS::SNS::TopicPolicy", "Topics", logical_id):
            findings.append(
                Finding(logical_id, "topic policy does not deny publishing without TLS")
            )
    return findings


def backup_coverage_findings(template: Template) -> list[Finding]:
    """Every database instance and file system is in a backup selection of its own template."""
    covered: set[str] = set()
    for _, selection in resources(template, "AWS::Backup::BackupSelection"):
        spec = _props(selection).get("BackupSelection", {})
        for entry in spec.get("Resources", []) if isinstance(spec, dict) else []:
            covered.update(_referenced_ids(entry))
    findings = []
    for rtype in ("AWS::RDS::DBInstance", "AWS::EFS::FileSystem"):
        for logical_id, _ in resources(template, rtype):
            if logical_id not in covered:
                findings.append(
                    Finding(logical_id, "not in any backup selection", resource_type=rtype)
                )
    return findings


def _referenced_ids(value: Any) -> set[str]:
    """Logical IDs that a template value refers to (Ref and Fn::GetAtt, at any depth)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value and isinstance(value["Fn::GetAtt"], list):
            found.add(str(value["Fn::GetAtt"][0]))
        for item in value.values():
            found |= _referenced_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= _referenced_ids(item)
    return found


_SECRET_KEY_RE = re.compile(r"(?i)(password|passwd|secretstring$|apikey|accesskey|token$)")
_SAFE_SECRET_KEYS = frozenset({"SecretStringTemplate", "GenerateStringKey", "ExcludeCharacters"})
_SECRET_VALUE_RES = (
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)


def iam_wildcard_findings(template: Template) -> list[Finding]:
    """No Allow statement with a wildcard action; ``*`` resources only where listed."""
    findings = []
    for logical_id, resource in template.get("Resources", {}).items():
        for statement in identity_statements(resource):
            if statement.get("Effect") != "Allow":
                continue
            actions = statement.get("Action", [])
            for action in actions if isinstance(actions, list) else [actions]:
                if action == "*" or str(action).endswith(":*"):
                    findings.append(Finding(logical_id, f"wildcard action {action!r}"))
            resources = statement.get("Resource", [])
            if "*" in (resources if isinstance(resources, list) else [resources]):
                sid = statement.get("Sid")
                if sid not in WILDCARD_RESOURCE_SIDS:
                    findings.append(
                        Finding(
                            logical_id,
                            f"Resource '*' in statement {sid or '(no Sid)'}; scope it "
                            "to ARNs or list the Sid with its reason in WILDCARD_RESOURCE_SIDS",
                        )
                    )
                    continue
                listed = actions if isinstance(actions, list) else [actions]
                extra = sorted(str(a) for a in listed if a not in WILDCARD_RESOURCE_ACTIONS[sid])
                if extra:
                    findings.append(
                        Finding(
                            logical_id,
                            f"statement {sid} allows {', '.join(extra)} on Resource "
                            f"'*', beyond the actions listed for it ("
                            f"{', '.join(sorted(WILDCARD_RESOURCE_ACTIONS[sid]))}); move them to a "
                            "statement scoped to ARNs",
                        )
                    )
    return findings


def unused_wildcard_allowances(templates: Iterable[Template]) -> list[str]:
    """Sids of WILDCARD_RESOURCE_SIDS that no statement with Resource '*' uses: a stale
    allowance waits for a statement to take its name."""
    used = set()
    for template in templates:
        for resource in template.get("Resources", {}).values():
            for statement in identity_statements(resource):
                resources = statement.get("Resource", [])
                if "*" in (resources if isinstance(resources, list) else [resources]):
                    used.add(statement.get("Sid"))
    return sorted(set(WILDCARD_RESOURCE_SIDS) - used)


def identity_statements(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Statements of IAM policies (managed, inline, role inline) in a template resource."""
    rtype = resource.get("Type")
    props = resource.get("Properties", {})
    documents: list[Any] = []
    if rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        documents.append(props.get("PolicyDocument"))
    elif rtype == "AWS::IAM::Role":
        documents.extend(p.get("PolicyDocument") for p in props.get("Policies", []))
    for document in documents:
        statements = document.get("Statement", []) if isinstance(document, dict) else []
        yield from statements if isinstance(statements, list) else [statements]


def plaintext_secret_findings(template: Template) -> list[Finding]:
    """No literal credential in a template: passwords, access keys, private keys."""
    findings: list[Finding] = []

    def walk(logical_id: str, value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(logical_id, v, str(k))
        elif isinstance(value, list):
            for item in value:
                walk(logical_id, item, key)
        elif isinstance(value, str):
            if (
                _SECRET_KEY_RE.search(key)
                and key not in _SAFE_SECRET_KEYS
                and value
                and "{{resolve:" not in value
            ):
                findings.append(Finding(logical_id, f"literal value in {key}"))
            if any(r.search(value) for r in _SECRET_VALUE_RES):
                findings.append(Finding(logical_id, f"credential-like value in {key}"))

    for logical_id, resource in template.get("Resources", {}).items():
        walk(logical_id, resource, "")
    for section in ("Parameters", "Outputs"):
        for name, entry in template.get(section, {}).items():
            walk(name, entry, "")
    return findings


# Written out here rather than imported from the stacks: a check that read the code's own
# constant could not notice the code dropping a category.
REQUIRED_RDS_EVENT_CATEGORIES = frozenset(
    {
        "availability",
        "failover",
        "failure",
        "low storage",
        "maintenance",
        "notification",
        "recovery",
    }
)
# Metrics the platform must alarm on wherever it defines alarms (issue-level contract with
# operators: health, storage, memory, connections, latency, queueing, WAL retention, EFS).
REQUIRED_ALARM_METRICS = frozenset(
    {
        ("AWS/RDS", "CPUUtilization"),
        ("AWS/RDS", "FreeStorageSpace"),
        ("AWS/RDS", "FreeableMemory"),
        ("AWS/RDS", "DatabaseConnections"),
        ("AWS/RDS", "ReadLatency"),
        ("AWS/RDS", "WriteLatency"),
        ("AWS/RDS", "DiskQueueDepth"),
        ("AWS/RDS", "TransactionLogsDiskUsage"),
        ("AWS/RDS", "OldestReplicationSlotLag"),
        ("AWS/EFS", "PercentIOLimit"),
    }
)


def trail_findings(template: Template) -> list[Finding]:
    """Every trail logs, validates and encrypts its files, covers all regions, feeds Logs."""
    findings = []
    for logical_id, trail in resources(template, "AWS::CloudTrail::Trail"):
        props = _props(trail)
        for prop, wanted in (
            ("IsLogging", True),
            ("EnableLogFileValidation", True),
            ("IsMultiRegionTrail", True),
            ("IncludeGlobalServiceEvents", True),
        ):
            if props.get(prop) is not wanted:
                findings.append(Finding(logical_id, f"{prop} is not {wanted}"))
        for prop in ("KMSKeyId", "CloudWatchLogsLogGroupArn", "CloudWatchLogsRoleArn"):
            if not props.get(prop):
                findings.append(Finding(logical_id, f"{prop} is not set"))
    return findings


def trail_presence_findings(
    templates: dict[str, Template], existing_trail_arn: str | None
) -> list[Finding]:
    """AU-2/AU-12: the account's API activity is recorded by a trail of this synth or by the
    existing trail the configuration names (govdr preflight checks that one in the account)."""
    created = [
        logical_id
        for template in templates.values()
        for logical_id, _ in resources(template, "AWS::CloudTrail::Trail")
    ]
    if created and existing_trail_arn:
        return [Finding(created[0], "a trail is created although existingTrailArn is set")]
    if not created and not existing_trail_arn:
        return [Finding("audit", "no CloudTrail trail is created and no existing trail is named")]
    return []


SLOT_WAL_KEEP_PARAMETER = "max_slot_wal_keep_size"
SLOT_LAG_METRIC = "OldestReplicationSlotLag"


def slot_wal_cap_findings(templates: dict[str, Template]) -> list[Finding]:
    """A stalled archive cannot fill the primary's storage: every PostgreSQL parameter group caps
    the WAL a slot keeps (``max_slot_wal_keep_size``, MB; -1 or unset keeps WAL without limit:
    https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-MAX-SLOT-WAL-KEEP-SIZE),
    and an alarm on the RDS slot-lag metric (bytes,
    https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html) fires at half the
    smallest cap at most, while the archive can still catch up."""
    findings: list[Finding] = []
    caps: list[int] = []
    for template in templates.values():
        for logical_id, group in resources(template, "AWS::RDS::DBParameterGroup"):
            if major_of_family(str(_props(group).get("Family", ""))) is None:
                continue
            value = _props(group).get("Parameters", {}).get(SLOT_WAL_KEEP_PARAMETER)
            if not str(value).isdigit() or int(str(value)) <= 0:
                findings.append(
                    Finding(
                        logical_id,
                        f"{SLOT_WAL_KEEP_PARAMETER} is {value!r}: a replication slot "
                        "may keep WAL until the storage is full",
                    )
                )
            else:
                caps.append(int(str(value)))
    if not caps:
        return findings
    limit = min(caps) * 1024 * 1024 // 2
    lag_alarms = [
        (logical_id, _props(alarm))
        for template in templates.values()
        for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm")
        if _props(alarm).get("MetricName") == SLOT_LAG_METRIC
    ]
    if not lag_alarms:
        findings.append(
            Finding("monitoring", f"no alarm on {SLOT_LAG_METRIC} warns before the slot's cap")
        )
    for logical_id, props in lag_alarms:
        threshold = props.get("Threshold")
        if not isinstance(threshold, int | float) or threshold > limit:
            findings.append(
                Finding(
                    logical_id,
                    f"{SLOT_LAG_METRIC} alarms at {threshold!r} bytes, above half of "
                    f"the slot's WAL cap ({limit} bytes): it would fire too late to catch up",
                )
            )
    return findings


def monitoring_coverage_findings(templates: dict[str, Template]) -> list[Finding]:
    """The synthesis as a whole (root and nested templates together) has an alarm on every
    required metric, the RDS event subscription, the EventBridge rules and a dashboard. A
    synthesis without alarms fails: nothing passes for having nothing to judge."""
    template: Template = {
        "Resources": {
            f"{name}:{logical_id}": resource
            for name, one in templates.items()
            for logical_id, resource in one.get("Resources", {}).items()
        }
    }
    alarms = [_props(a) for _, a in resources(template, "AWS::CloudWatch::Alarm")]
    findings = []
    alarmed = {(a.get("Namespace"), a.get("MetricName")) for a in alarms}
    for namespace, metric in sorted(REQUIRED_ALARM_METRICS - alarmed):
        findings.append(Finding("monitoring", f"no alarm on {namespace} {metric}"))
    if not list(resources(template, "AWS::CloudWatch::Dashboard")):
        findings.append(Finding("monitoring", "no dashboard"))
    subscriptions = [_props(s) for _, s in resources(template, "AWS::RDS::EventSubscription")]
    if not subscriptions:
        findings.append(Finding("monitoring", "no RDS event subscription"))
    for sub in subscriptions:
        missing = REQUIRED_RDS_EVENT_CATEGORIES - set(sub.get("EventCategories", []))
        if missing or sub.get("Enabled") is not True:
            findings.append(
                Finding(
                    "monitoring",
                    f"RDS event subscription {sub.get('SubscriptionName')} misses "
                    f"{', '.join(sorted(missing)) or 'Enabled=true'}",
                )
            )
    patterns = [
        _props(r).get("EventPattern", {}) for _, r in resources(template, "AWS::Events::Rule")
    ]
    if not any(
        p.get("source") == ["aws.rds"]
        and "failover" in p.get("detail", {}).get("EventCategories", [])
        for p in patterns
    ):
        findings.append(Finding("monitoring", "no EventBridge rule for RDS failover events"))
    if not any(
        p.get("source") == ["aws.secretsmanager"]
        and "RotationFailed" in p.get("detail", {}).get("eventName", [])
        for p in patterns
    ):
        findings.append(Finding("monitoring", "no EventBridge rule for failed secret rotation"))
    return findings


def lambda_concurrency_findings(template: Template) -> list[Finding]:
    """No function reserves concurrency: Lambda keeps at least 10 unreserved executions per
    region and new accounts or opt-in regions often have a quota of exactly 10, so any
    reservation can fail the first deploy
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)."""
    return [
        Finding(
            logical_id, f"reserves {props['ReservedConcurrentExecutions']} concurrent executions"
        )
        for logical_id, function in resources(template, "AWS::Lambda::Function")
        if "ReservedConcurrentExecutions" in (props := _props(function))
    ]


# Lambda runtimes AWS lists as deprecated (Python and Node.js), from the Deprecated runtimes
# table of https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html: a function on one
# gets no security patches and, some months after deprecation, can no longer be created or
# updated, so a first deploy fails on it. python3.10 is deprecated since 2026-10-31 (creation
# blocked from 2027-02-01), nodejs20.x since 2026-04-30.
DEPRECATED_RUNTIMES = frozenset(
    {
        "python2.7",
        "python3.6",
        "python3.7",
        "python3.8",
        "python3.9",
        "python3.10",
        "nodejs",
        "nodejs4.3",
        "nodejs4.3-edge",
        "nodejs6.10",
        "nodejs8.10",
        "nodejs10.x",
        "nodejs12.x",
        "nodejs14.x",
        "nodejs16.x",
        "nodejs18.x",
        "nodejs20.x",
    }
)
FUNCTION_TYPES = ("AWS::Lambda::Function", "AWS::Serverless::Function")


def transform_findings(template: Template) -> list[Finding]:
    """No template declares a Transform (macros and SAM-style transforms expand at deploy time
    into resources that no check of the synth has seen, e.g. hosted rotation's
    ``AWS::SecretsManager-2024-09-16`` and its python3.10 function,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/transform-section-structure.html),
    and no function runs on a deprecated runtime."""
    findings = []
    transform = template.get("Transform")
    if transform:
        names = ", ".join(t if isinstance(t, str) else json.dumps(t) for t in as_list(transform))
        findings.append(
            Finding(
                "Transform",
                f"the template declares {names}, which CloudFormation expands at deploy "
                "time into resources this synth never checked",
            )
        )
    for rtype in FUNCTION_TYPES:
        for logical_id, function in resources(template, rtype):
            runtime = _props(function).get("Runtime")
            if runtime in DEPRECATED_RUNTIMES:
                findings.append(
                    Finding(
                        logical_id,
                        f"runtime {runtime} is deprecated "
                        "(https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html)",
                    )
                )
    return findings


def _ref(value: Any) -> str | None:
    ref = value.get("Ref") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) else None


def _references(value: Any) -> set[str]:
    """Every logical ID the value refers to (Ref or Fn::GetAtt), at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("Ref"), str):
            found.add(value["Ref"])
        att = value.get("Fn::GetAtt")
        if isinstance(att, list) and att and isinstance(att[0], str):
            found.add(att[0])
        for item in value.values():
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def rotation_order_findings(template: Template) -> list[Finding]:
    """A secret's rotation schedule waits for every custom resource that reads the secret.

    Creating a schedule with a rotation function rotates the secret at once
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-secretsmanager-rotationschedule.html);
    a custom resource that reads the secret and logs in with it meanwhile races that rotation.
    """
    all_resources = template.get("Resources", {})
    findings = []
    for logical_id, schedule in resources(template, "AWS::SecretsManager::RotationSchedule"):
        target = _ref(_props(schedule).get("SecretId"))
        if target is None:
            continue
        secret_ids = {target}
        attachment = all_resources.get(target, {})
        if attachment.get("Type") == "AWS::SecretsManager::SecretTargetAttachment":
            secret = _ref(_props(attachment).get("SecretId"))
            if secret:
                secret_ids.add(secret)
        depends = set(as_list(schedule.get("DependsOn", [])))
        for reader_id, reader in all_resources.items():
            rtype = str(reader.get("Type", ""))
            if not (rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource"):
                continue
            if _references(_props(reader)) & secret_ids and reader_id not in depends:
                findings.append(
                    Finding(
                        logical_id,
                        f"rotates {target} while {reader_id} reads it; add DependsOn "
                        f"{reader_id} so that the first rotation starts after it answered",
                    )
                )
    return findings


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
                elif _props(instances[instance]).get("EnableIAMDatabaseAuthentication") is not True:
                    findings.append(
                        Finding(
                            logical_id,
                            f"rds-db:connect on {instance}, which does not enable "
                            "IAM database authentication (EnableIAMDatabaseAuthentication)",
                        )
                    )
    return findings


CHECKS: dict[str, Callable[[Template], list[Finding]]] = {
    "database-tls": database_tls_findings,
    "file-system-tls": file_system_tls_findings,
    "key-rotation": key_rotation_findings,
    "no-open-ingress": open_ingress_findings,
    "log-groups": log_group_findings,
    "pgaudit": pgaudit_findings,
    "alarm-actions": alarm_action_findings,
    "transport-tls": transport_tls_findings,
    "backup-coverage": backup_coverage_findings,
    "trail": trail_findings,
    "lambda-concurrency": lambda_concurrency_findings,
    "engine-version": engine_version_findings,
    "no-transform": transform_findings,
    "rotation-order": rotation_order_findings,
    "drill-connect": drill_connect_findings,
}
