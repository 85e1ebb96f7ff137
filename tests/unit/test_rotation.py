"""Credential rotation in the templates: our own function per secret, its permissions, its
schedule and its order against the bootstrap; the gate rules no-transform and rotation-order."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.gate import RULE_FIXES, own_checks
from govdr.compliance.rules.no_transform import transform_findings
from govdr.compliance.rules.rotation_order import rotation_order_findings
from govdr.compliance.templates import resources
from govdr.credentials.runtime.handler import CONNECT_TIMEOUT_SECONDS, MASTER_RETRY_DELAYS
from tests.conftest import TEST_SUFFIX, Synth

FUNCTIONS = {"rds-rotation": "single-user", "rds-txlog-rotation": "alternating-users"}


def _function(database: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    [found] = [
        (lid, f)
        for lid, f in resources(database, "AWS::Lambda::Function")
        if f["Properties"]["FunctionName"] == f"{name}-{TEST_SUFFIX}"
    ]
    return found


def _schedule(database: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    function_id, _ = _function(database, name)
    [found] = [
        (lid, s)
        for lid, s in resources(database, "AWS::SecretsManager::RotationSchedule")
        if s["Properties"]["RotationLambdaARN"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ]
    return found


def _attachment(database: dict[str, Any], secret_name: str) -> str:
    [secret_id] = [
        lid
        for lid, s in resources(database, "AWS::SecretsManager::Secret")
        if s["Properties"]["Name"] == f"{secret_name}-{TEST_SUFFIX}"
    ]
    [attachment_id] = [
        lid
        for lid, a in resources(database, "AWS::SecretsManager::SecretTargetAttachment")
        if a["Properties"]["SecretId"] == {"Ref": secret_id}
    ]
    return attachment_id


@pytest.mark.parametrize(("name", "strategy"), FUNCTIONS.items())
def test_fault_7_each_secret_rotates_by_our_python_3_14_function_in_the_vpc(
    synth: Synth, name: str, strategy: str
) -> None:
    """Fault 7: hosted rotation created a python3.10 function through a transform. Each
    secret now has our function (govdr/credentials/runtime), bundled like the others, in the
    Functions subnets with rotation-sg, invoked every 30 days."""
    database = synth.raw("database")
    _, function = _function(database, name)
    props = function["Properties"]
    assert props["Runtime"] == "python3.14"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "govdr.credentials.runtime.handler.handler"
    assert props["Timeout"] == 60
    assert "ReservedConcurrentExecutions" not in props
    assert props["Environment"]["Variables"] == {
        "ROTATION_STRATEGY": strategy,
        "EXCLUDE_CHARACTERS": " %+~`#$&*()|[]{}:;<>?!'/@\"\\",
    }
    [group] = props["VpcConfig"]["SecurityGroupIds"]
    assert "RotationSecurityGroup" in group["Ref"]
    subnets = [s["Ref"] for s in props["VpcConfig"]["SubnetIds"]]
    assert len(subnets) == 3 and all("FunctionsSubnet" in s for s in subnets)
    _, schedule = _schedule(database, name)
    assert schedule["Properties"]["RotationRules"] == {"ScheduleExpression": "rate(30 days)"}
    secret = "rds-master-secret" if name == "rds-rotation" else "rds-txlog-secret"
    assert schedule["Properties"]["SecretId"] == {"Ref": _attachment(database, secret)}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_fault_7_rotation_roles_are_least_privilege(synth: Synth, name: str) -> None:
    """The documented rotation permissions on the one secret, random passwords, the secrets
    key through Secrets Manager only; the alternating-users function also reads the master."""
    database = synth.raw("database")
    [policy] = [
        p["Properties"]["PolicyDocument"]
        for _, p in resources(database, "AWS::IAM::ManagedPolicy")
        if p["Properties"]["ManagedPolicyName"] == f"{name}-policy-{TEST_SUFFIX}"
    ]
    statements = {s["Sid"]: s for s in policy["Statement"]}
    master = {"Ref": _attachment(database, "rds-master-secret")}
    own = master if name == "rds-rotation" else {"Ref": _attachment(database, "rds-txlog-secret")}
    assert statements["RotateSecret"]["Action"] == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    ]
    assert statements["RotateSecret"]["Resource"] == own
    assert statements["GenerateRandomPassword"]["Action"] == "secretsmanager:GetRandomPassword"
    key = statements["UseSecretsKey"]
    assert key["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "SecretsKey" in key["Resource"]["Ref"]
    assert "secretsmanager." in json.dumps(key["Condition"]["StringEquals"]["kms:ViaService"])
    expected = {"RotateSecret", "GenerateRandomPassword", "UseSecretsKey"}
    expected |= {"VpcNetworkInterfaces", "WriteOwnLogs"}
    if name == "rds-txlog-rotation":
        expected.add("ReadMasterSecret")
        assert statements["ReadMasterSecret"]["Action"] == "secretsmanager:GetSecretValue"
        assert statements["ReadMasterSecret"]["Resource"] == master
    assert set(statements) == expected


@pytest.mark.parametrize("name", FUNCTIONS)
def test_fault_7_only_secrets_manager_of_this_account_invokes_it_for_its_secret(
    synth: Synth, name: str
) -> None:
    database = synth.raw("database")
    function_id, _ = _function(database, name)
    _, schedule = _schedule(database, name)
    [(permission_id, permission)] = [
        (lid, p)
        for lid, p in resources(database, "AWS::Lambda::Permission")
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ]
    assert permission["Properties"] == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
        "Principal": "secretsmanager.amazonaws.com",
        "SourceAccount": {"Ref": "AWS::AccountId"},
        "SourceArn": schedule["Properties"]["SecretId"],
    }
    assert permission_id in schedule["DependsOn"]  # allowed before the first rotation


def test_fault_7_no_transform_and_no_deprecated_runtime_in_any_template(synth: Synth) -> None:
    """Fault 7: no template carries a Transform, no function a deprecated runtime."""
    templates = synth.all_raw()
    assert "no-transform" in own_checks(synth.config)
    assert "no-transform" in RULE_FIXES
    for template in templates.values():
        assert "Transform" not in template
        assert texts(transform_findings(template)) == []
    runtimes = {
        f["Properties"]["Runtime"]
        for template in templates.values()
        for _, f in resources(template, "AWS::Lambda::Function")
    }
    assert runtimes == {"python3.14", "nodejs24.x"}  # ours and CDK's providers


def test_fault_7_no_transform_check_failing_twins(synth: Synth) -> None:
    """The twins: hosted rotation's transform and its python3.10 function, and an old Node.js
    runtime on a CDK provider, each fail with the exact finding."""
    database = copy.deepcopy(synth.raw("database"))
    database["Transform"] = "AWS::SecretsManager-2024-09-16"
    function_id, _ = _function(database, "rds-rotation")
    database["Resources"][function_id]["Properties"]["Runtime"] = "python3.10"
    assert texts(transform_findings(database)) == [
        "Transform: the template declares AWS::SecretsManager-2024-09-16, which "
        "CloudFormation expands at deploy time into resources this synth never checked",
        f"{function_id}: runtime python3.10 is deprecated "
        "(https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html)",
    ]
    database["Transform"] = ["AWS::Serverless-2016-10-31", {"Name": "AWS::Include"}]
    del database["Resources"][function_id]
    assert texts(transform_findings(database)) == [
        "Transform: the template declares AWS::Serverless-2016-10-31, "
        '{"Name": "AWS::Include"}, which CloudFormation expands at deploy time into resources '
        "this synth never checked"
    ]

    network = copy.deepcopy(synth.raw("network"))
    [(provider_id, provider)] = resources(network, "AWS::Lambda::Function")
    provider["Properties"]["Runtime"] = "nodejs20.x"
    assert texts(transform_findings(network)) == [
        f"{provider_id}: runtime nodejs20.x is deprecated "
        "(https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html)"
    ]


def test_fault_5_rotation_schedules_wait_for_the_bootstrap(synth: Synth) -> None:
    """Fault 5: the master secret's first rotation ran at creation and raced
    Custom::TxlogBootstrap, which reads the master secret to create the archiver's login.
    Both schedules now DependsOn the bootstrap, and the gate rule rotation-order says so."""
    database = synth.raw("database")
    [(bootstrap_id, _)] = resources(database, "Custom::TxlogBootstrap")
    for name in FUNCTIONS:
        _, schedule = _schedule(database, name)
        assert bootstrap_id in schedule["DependsOn"]
    assert "rotation-order" in own_checks(synth.config)
    assert "rotation-order" in RULE_FIXES
    for template in synth.all_raw().values():
        assert texts(rotation_order_findings(template)) == []


@pytest.mark.control("IA-5(1)")
def test_fault_5_rotation_order_check_failing_twin(synth: Synth) -> None:
    """The twin: the master schedule without its DependsOn on the bootstrap (as before the
    fix) fails; so does the archiver's."""
    database = copy.deepcopy(synth.raw("database"))
    [(bootstrap_id, _)] = resources(database, "Custom::TxlogBootstrap")
    ids = {}
    for name in FUNCTIONS:
        schedule_id, schedule = _schedule(database, name)
        ids[name] = (schedule_id, schedule["Properties"]["SecretId"]["Ref"])
        schedule["DependsOn"].remove(bootstrap_id)
    assert sorted(texts(rotation_order_findings(database))) == [
        f"{schedule_id}: rotates {attachment} while {bootstrap_id} reads it; add DependsOn "
        f"{bootstrap_id} so that the first rotation starts after it answered"
        for schedule_id, attachment in sorted(ids.values())
    ]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_fault_7_master_login_retries_fit_well_inside_the_function_timeout(
    synth: Synth, name: str
) -> None:
    """The alternating-users setSecret waits MASTER_RETRY_DELAYS while the master secret
    rotates (the two first rotations run together): at most 20 s in all, leaving the
    function's timeout room for its connections (each at most CONNECT_TIMEOUT_SECONDS)."""
    _, function = _function(synth.raw("database"), name)
    timeout = function["Properties"]["Timeout"]
    waits = sum(MASTER_RETRY_DELAYS)
    assert waits == 14 <= 20
    assert waits + 3 * CONNECT_TIMEOUT_SECONDS < timeout
