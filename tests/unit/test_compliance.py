"""The compliance gate: rule packs and own checks on every synth, acknowledgments counted."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3

from govdr.compliance.finding import texts
from govdr.compliance.gate import apply_compliance, own_checks, run_own_checks
from govdr.compliance.rules.iam_wildcards import iam_wildcard_findings, unused_wildcard_allowances
from govdr.compliance.rules.plaintext_secrets import plaintext_secret_findings
from govdr.compliance.templates import identity_statements, resources
from govdr.config import DrConfig
from govdr.constructs.nag_notes import PACKS, Ack, accept_findings, acknowledgments
from govdr.constructs.policy_notes import WILDCARD_RESOURCE_ACTIONS, WILDCARD_RESOURCE_SIDS
from govdr.stacks.tap_stack import TapStack
from govdr.synth import NESTED, cdk_json_context
from tests.conftest import Synth

# Every acknowledgment is a reviewed decision: adding one must change this number.
# Each custom-resource framework adds five (four on its function, one on its role's policy).
EXPECTED_ACKNOWLEDGMENTS = 55
# The prod switch turns deletion protection on, so its three acknowledgments go away, and
# builds no vault cleaner, so its seven (function policy, function, wildcards) and its
# framework's five go too.
EXPECTED_PROD_ACKNOWLEDGMENTS = 40


@pytest.mark.control("CM-2")
def test_real_templates_pass_every_own_check(synth: Synth) -> None:
    templates = synth.all_raw()
    assert run_own_checks(synth.config, templates) == []
    assert set(own_checks(synth.config)) >= {
        "database-tls",
        "file-system-tls",
        "key-rotation",
        "no-open-ingress",
        "log-groups",
        "pgaudit",
        "alarm-actions",
        "transport-tls",
        "backup-coverage",
        "naming",
        "iam-wildcards",
        "plaintext-secrets",
        "destroyable",
    }


def test_destroyability_is_not_required_with_the_prod_switch() -> None:
    assert "destroyable" not in own_checks(DrConfig(production=True))


def test_acknowledgments_are_counted_specific_and_narrow(synth: Synth) -> None:
    acks = synth.stack.acknowledgments
    assert len(acks) == EXPECTED_ACKNOWLEDGMENTS
    assert len({(a.path, a.rule) for a in acks}) == len(acks)
    for ack in acks:
        assert ack.rule.split("-", 1)[0] in PACKS
        assert len(ack.reason) >= 60, ack
        # On the CloudFormation resource itself, never a stack or a whole construct tree.
        assert ack.path.endswith("/Resource"), ack.path
    multi = [a for a in acks if a.rule.startswith(("AwsSolutions-IAM4", "AwsSolutions-IAM5"))]
    assert multi and all("[" in a.rule for a in multi)


def test_prod_switch_drops_the_deletion_protection_acknowledgments(prod_synth: Synth) -> None:
    acks = prod_synth.stack.acknowledgments
    assert len(acks) == EXPECTED_PROD_ACKNOWLEDGMENTS
    assert not [a for a in acks if "DeletionProtection" in a.rule or a.rule.endswith("RDS10")]


def test_every_wildcard_allowance_is_used_and_its_stale_twin(synth: Synth) -> None:
    # Each listed Sid names a statement of the synthesized platform with Resource "*", and the
    # actions listed for it are exactly that statement's: nothing is allowed in advance.
    templates = [synth.raw(None if name == "root" else name) for name in ("root", *NESTED)]
    assert set(WILDCARD_RESOURCE_ACTIONS) == set(WILDCARD_RESOURCE_SIDS)
    assert unused_wildcard_allowances(templates) == []
    used: dict[str, set[str]] = {}
    for template in templates:
        for resource in template.get("Resources", {}).values():
            for statement in identity_statements(resource):
                if statement.get("Sid") in WILDCARD_RESOURCE_SIDS:
                    actions = statement["Action"]
                    used.setdefault(statement["Sid"], set()).update(
                        actions if isinstance(actions, list) else [actions]
                    )
    assert used == {sid: set(actions) for sid, actions in WILDCARD_RESOURCE_ACTIONS.items()}
    # The twin: without the vault cleaner (its only user), StopBackupJobs is a stale allowance.
    without_cleaner = [
        t for t, name in zip(templates, ("root", *NESTED), strict=True) if name != "backup"
    ]
    assert unused_wildcard_allowances(without_cleaner) == ["StopBackupJobs"]


def _fresh_app(tmp_path: Path) -> cdk.App:
    return cdk.App(outdir=str(tmp_path), context=cdk_json_context())


def test_rule_packs_fail_the_synth_on_a_finding(tmp_path: Path) -> None:
    app = _fresh_app(tmp_path)
    stack = cdk.Stack(app, "Probe", env=cdk.Environment(region="eu-central-2"))
    s3.Bucket(stack, "Unprotected")
    apply_compliance(app, DrConfig())
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert "AwsSolutions-S1" in rules  # no server access logs
    assert "NIST.800.53.R5-S3BucketSSLRequestsOnly" in rules
    assert "HIPAA.Security-S3BucketSSLRequestsOnly" in rules
    assert "govdr-transport-tls" in rules


@pytest.mark.control("SC-8")
def test_own_checks_fail_the_synth_of_a_weakened_platform(tmp_path: Path) -> None:
    app = _fresh_app(tmp_path)
    config = DrConfig(environment_suffix="weak")
    stack = TapStack(
        app, config.stack_name, config=config, env=cdk.Environment(region=config.region)
    )
    group = stack.database.parameter_group.node.find_child("Resource")
    assert isinstance(group, rds.CfnDBParameterGroup)
    group.add_property_override("Parameters.rds\\.force_ssl", "0")
    apply_compliance(app, config)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    govdr = next(p for p in report["pluginReports"] if p["pluginName"] == "govdr")
    messages = [v["description"] for v in govdr["violations"]]
    assert any("does not set rds.force_ssl=1" in m for m in messages)
    assert {v["ruleName"] for v in govdr["violations"]} == {"govdr-database-tls"}


def _mutable(synth: Synth, name: str) -> dict[str, Any]:
    return copy.deepcopy(synth.raw(name))


@pytest.mark.control("AC-6")
def test_iam_wildcard_check_and_its_failing_twins(synth: Synth) -> None:
    for name in ("root", *NESTED):
        assert texts(iam_wildcard_findings(synth.raw(None if name == "root" else name))) == [], name
    backup = _mutable(synth, "backup")
    [(lid, policy)] = [
        (lid, p)
        for lid, p in resources(backup, "AWS::IAM::ManagedPolicy")
        if lid.startswith("VaultCleanerRole")
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    statements.append({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::x"})
    statements.append(
        {"Sid": "Sneaky", "Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}
    )
    assert texts(iam_wildcard_findings(backup)) == [
        f"{lid}: wildcard action 's3:*'",
        f"{lid}: Resource '*' in statement Sneaky; scope it to ARNs or list the Sid with its "
        "reason in WILDCARD_RESOURCE_SIDS",
    ]


def test_a_listed_wildcard_sid_carries_only_its_listed_actions(synth: Synth) -> None:
    backup = _mutable(synth, "backup")
    [(lid, policy)] = [
        (lid, p)
        for lid, p in resources(backup, "AWS::IAM::ManagedPolicy")
        if lid.startswith("VaultCleanerRole")
    ]
    [statement] = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "StopBackupJobs"
    ]
    assert texts(iam_wildcard_findings(backup)) == []
    statement["Action"] = [*statement["Action"], "rds:DeleteDBInstance"]
    assert texts(iam_wildcard_findings(backup)) == [
        f"{lid}: statement StopBackupJobs allows rds:DeleteDBInstance on Resource '*', beyond "
        "the actions listed for it (backup:ListBackupJobs, backup:StopBackupJob); move them to "
        "a statement scoped to ARNs"
    ]
    statement["Action"] = "backup:DeleteBackupVault"  # a single action, not a list
    assert texts(iam_wildcard_findings(backup))[0].startswith(
        f"{lid}: statement StopBackupJobs allows backup:DeleteBackupVault on Resource '*'"
    )


def test_deny_statements_may_use_wildcards(synth: Synth) -> None:
    backup = _mutable(synth, "backup")
    [(_, policy), *_] = resources(backup, "AWS::IAM::ManagedPolicy")
    policy["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Deny", "Action": "*", "Resource": "*"}
    )
    assert texts(iam_wildcard_findings(backup)) == []


@pytest.mark.control("IA-5(1)")
def test_plaintext_secret_check_and_its_failing_twins(synth: Synth) -> None:
    for name in ("root", *NESTED):
        assert (
            texts(plaintext_secret_findings(synth.raw(None if name == "root" else name))) == []
        ), name
    database = _mutable(synth, "database")
    [(lid, instance)] = resources(database, "AWS::RDS::DBInstance")
    instance["Properties"]["MasterUserPassword"] = "hunter2-but-longer"
    instance["Properties"]["Tags"].append({"Key": "note", "Value": "key AKIAABCDEFGHIJKLMNOP"})
    assert texts(plaintext_secret_findings(database)) == [
        f"{lid}: literal value in MasterUserPassword",
        f"{lid}: credential-like value in Value",
    ]


def test_own_checks_read_only_the_templates_of_this_synth(synth: Synth, tmp_path: Path) -> None:
    from govdr.compliance.gate import _all_template_paths

    for path in [*synth.template_files(), *synth.outdir.glob("*.assets.json")]:
        (tmp_path / path.name).write_text(path.read_text())
    # A nested template left behind by an earlier synth (another suffix) must not be judged.
    (tmp_path / "TapStackoldNetworkABCDEF12.nested.template.json").write_text(
        json.dumps(
            {
                "Resources": {
                    "Old": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "alarms-old"}}
                }
            }
        )
    )
    root = tmp_path / f"{synth.config.stack_name}.template.json"
    found = {p.name for p in _all_template_paths([str(root)])}
    assert found == {p.name for p in synth.template_files()}


def _pack_rules(tmp_path: Path, acknowledge: bool) -> set[str]:
    """The rule-pack findings of a stack holding one bucket, with or without the
    acknowledgment of AwsSolutions-S1 where the bucket is built."""
    app = _fresh_app(tmp_path)
    stack = cdk.Stack(app, "Probe", env=cdk.Environment(region="eu-central-2"))
    bucket = s3.Bucket(stack, "Unlogged", enforce_ssl=True)
    if acknowledge:
        accept_findings(
            bucket,
            ["AwsSolutions-S1"],
            "a probe bucket of this test: its server access logs are not the subject here",
        )
    apply_compliance(app, DrConfig())
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    return {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}


def test_an_acknowledgment_where_the_resource_is_built_removes_exactly_its_rule(
    tmp_path: Path,
) -> None:
    without = _pack_rules(tmp_path / "without", acknowledge=False)
    acknowledged = _pack_rules(tmp_path / "with", acknowledge=True)
    assert "AwsSolutions-S1" in without  # the twin: not acknowledged, reported
    assert without - acknowledged == {"AwsSolutions-S1"}


def test_acknowledgments_are_collected_from_the_tree_with_their_reasons() -> None:
    stack = cdk.Stack(cdk.App(), "Probe")
    bucket = s3.Bucket(stack, "Bucket")
    reason = "a probe bucket of this test, with a reason as long as the rule asks for"
    accept_findings(bucket, ["AwsSolutions-S1", "HIPAA.Security-S3BucketLoggingEnabled"], reason)
    assert acknowledgments(stack) == [
        Ack("Probe/Bucket/Resource", "AwsSolutions-S1", reason),
        Ack("Probe/Bucket/Resource", "HIPAA.Security-S3BucketLoggingEnabled", reason),
    ]
    assert acknowledgments(cdk.Stack(cdk.App(), "Empty")) == []


@pytest.mark.parametrize(
    ("rules", "reason", "message"),
    [
        (["AwsSolutions-S1"], "because", "needs its reason"),
        (["S1"], "x" * 80, "is not a rule of the packs"),
        (["Checkov-CKV_AWS_18"], "x" * 80, "is not a rule of the packs"),
    ],
)
def test_an_acknowledgment_needs_a_pack_rule_and_a_reason(
    rules: list[str], reason: str, message: str
) -> None:
    bucket = s3.Bucket(cdk.Stack(cdk.App(), "Probe"), "Bucket")
    with pytest.raises(ValueError, match=message):
        accept_findings(bucket, rules, reason)
