"""Every own gate rule has a failing twin: a mutation of the real synthesis that it, and the
gate, must report. A rule added without one fails here, and so does a rule that passes for
having nothing to judge (its twin would come back clean)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from govdr.compliance.gate import (
    RULE_FIXES,
    RULE_MODULES,
    own_checks,
    run_own_checks,
    synth_checks,
)
from govdr.compliance.templates import resources
from tests.conftest import Synth

Templates = dict[str, dict[str, Any]]


def _props(t: Templates, name: str, rtype: str, index: int = 0) -> dict[str, Any]:
    found = list(resources(t[name], rtype))
    props: dict[str, Any] = found[index][1]["Properties"]
    return props


def _each(t: Templates, rtype: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, template in t.items():
        for lid, resource in resources(template, rtype):
            yield name, lid, resource


def _parameters(t: Templates) -> dict[str, Any]:
    params: dict[str, Any] = _props(t, "database", "AWS::RDS::DBParameterGroup")["Parameters"]
    return params


def _first_policy_statement(t: Templates, name_part: str) -> dict[str, Any]:
    for _, _, resource in _each(t, "AWS::IAM::ManagedPolicy"):
        if name_part in str(resource["Properties"].get("ManagedPolicyName", "")):
            statement: dict[str, Any] = resource["Properties"]["PolicyDocument"]["Statement"][0]
            return statement
    raise AssertionError(f"no managed policy named like {name_part}")


def _delete(
    t: Templates, rtype: str, keep: Callable[[dict[str, Any]], bool] = lambda _: False
) -> None:
    for name, lid, resource in list(_each(t, rtype)):
        if not keep(resource):
            del t[name]["Resources"][lid]


def _no_tls_deny(t: Templates) -> None:
    for _, _, policy in _each(t, "AWS::S3::BucketPolicy"):
        document = policy["Properties"]["PolicyDocument"]
        document["Statement"] = [s for s in document["Statement"] if s["Effect"] != "Deny"]


def _open_ingress(t: Templates) -> None:
    for _, _, group in _each(t, "AWS::EC2::SecurityGroup"):
        ingress = group["Properties"].get("SecurityGroupIngress")
        if ingress:
            ingress[0]["CidrIp"] = "0.0.0.0/0"
            return
    raise AssertionError("no inline ingress to open")


def _drop_dependencies(t: Templates) -> None:
    for _, _, schedule in _each(t, "AWS::SecretsManager::RotationSchedule"):
        schedule.pop("DependsOn", None)


def _no_publisher_statement(t: Templates) -> None:
    for _, _, key in _each(t, "AWS::KMS::Key"):
        policy = key["Properties"]["KeyPolicy"]
        policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "PublishRdsEvents"]


def _no_database_ingress(t: Templates) -> None:
    _delete(
        t,
        "AWS::EC2::SecurityGroupIngress",
        keep=lambda r: r["Properties"].get("FromPort") != 5432,
    )


def _custom_without_timeout(t: Templates) -> None:
    for template in t.values():
        for resource in template.get("Resources", {}).values():
            if str(resource.get("Type", "")).startswith("Custom::"):
                resource["Properties"].pop("ServiceTimeout", None)
                return
    raise AssertionError("no custom resource")


MUTATIONS: dict[str, Callable[[Templates], None]] = {
    "database-tls": lambda t: _parameters(t).update({"rds.force_ssl": "0"}),
    "file-system-tls": lambda t: _props(t, "storage", "AWS::EFS::FileSystem").update(
        {"Encrypted": False}
    ),
    "key-rotation": lambda t: _props(t, "security", "AWS::KMS::Key").update(
        {"EnableKeyRotation": False}
    ),
    "no-open-ingress": _open_ingress,
    "log-groups": lambda t: _props(t, "storage", "AWS::Logs::LogGroup").pop("KmsKeyId"),
    "pgaudit": lambda t: _parameters(t).update({"shared_preload_libraries": "pg_stat_statements"}),
    "alarm-actions": lambda t: _props(t, "monitoring", "AWS::CloudWatch::Alarm").pop(
        "AlarmActions"
    ),
    "transport-tls": _no_tls_deny,
    "backup-coverage": lambda t: _delete(t, "AWS::Backup::BackupSelection"),
    "trail": lambda t: _props(t, "audit", "AWS::CloudTrail::Trail").update(
        {"IsMultiRegionTrail": False}
    ),
    "lambda-concurrency": lambda t: _props(t, "storage", "AWS::Lambda::Function").update(
        {"ReservedConcurrentExecutions": 1}
    ),
    "engine-version": lambda t: _props(t, "database", "AWS::RDS::DBInstance").update(
        {"EngineVersion": "18.6", "AutoMinorVersionUpgrade": True}
    ),
    "no-transform": lambda t: t["root"].update({"Transform": "AWS::Serverless-2016-10-31"}),
    "rotation-order": _drop_dependencies,
    "drill-connect": lambda t: _first_policy_statement(t, "rds-drill-connect").update(
        {"Resource": "*"}
    ),
    "naming": lambda t: _props(t, "database", "AWS::RDS::DBInstance").update(
        {"DBInstanceIdentifier": "rds-elsewhere"}
    ),
    "destroyable": lambda t: t["storage"]["Resources"][
        next(lid for lid, _ in resources(t["storage"], "AWS::EFS::FileSystem"))
    ].update({"DeletionPolicy": "Retain"}),
    "iam-wildcards": lambda t: _first_policy_statement(t, "rpo-monitor-policy").update(
        {"Action": "*"}
    ),
    "plaintext-secrets": lambda t: _props(t, "database", "AWS::RDS::DBInstance").update(
        {"MasterUserPassword": "hunter2-but-longer"}
    ),
    "custom-resource-timeout": _custom_without_timeout,
    "audit-trail": lambda t: _delete(t, "AWS::CloudTrail::Trail"),
    "policy-grammar": lambda t: _first_policy_statement(t, "rpo-monitor-policy").update(
        {"Action": "rds:DescribeDBInstance"}
    ),
    "key-requirements": _no_publisher_statement,
    "slot-wal-cap": lambda t: _parameters(t).pop("max_slot_wal_keep_size"),
    "monitoring-coverage": lambda t: _delete(t, "AWS::CloudWatch::Dashboard"),
    "network-flows": _no_database_ingress,
}


def test_every_rule_has_a_failing_twin(synth: Synth) -> None:
    rules = set(own_checks(synth.config)) | set(synth_checks(synth.config))
    assert set(MUTATIONS) == rules, "give each new rule its twin in MUTATIONS"


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_the_rule_reports_its_twin(synth: Synth, rule: str) -> None:
    templates = copy.deepcopy(synth.all_raw())
    MUTATIONS[rule](templates)
    reported = {(r, finding.rule) for r, _, finding in run_own_checks(synth.config, templates)}
    assert (rule, rule) in reported, f"{rule} passes its twin; it reported: {sorted(reported)}"


def test_every_rule_has_its_module_with_the_fix(synth: Synth) -> None:
    """Each rule's name and fix live in its own module (RULE, FIX); the gate reads them."""
    rules = set(own_checks(synth.config)) | set(synth_checks(synth.config))
    assert {module.RULE for module in RULE_MODULES} == rules
    assert set(RULE_FIXES) == rules
    for module in RULE_MODULES:
        assert len(module.FIX) >= 30, module.__name__
        assert module.__name__.startswith("govdr.compliance."), module.__name__
