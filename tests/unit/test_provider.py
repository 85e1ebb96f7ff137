"""CDK's Provider framework in front of each custom-resource handler: what the templates say.

The handler's behaviour behind the framework (the framework's own code from the pinned
aws-cdk-lib, run by Node) is tested in tests/runtime (tests/support/cdk_provider.py).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from govdr.compliance.custom_resources import custom_resource_timeout_findings
from govdr.compliance.finding import texts
from govdr.compliance.templates import resources
from govdr.constructs.provider import USER_HANDLER_ENV
from tests.conftest import TEST_SUFFIX, Synth

CUSTOM_RESOURCES = {
    # custom resource -> (template, handler, framework)
    "TxlogBootstrapCustomResource": ("database", "txlog-bootstrap", "txlog-bootstrap-provider"),
    "VaultCleanerCustomResource": (
        "backup",
        "backup-vault-cleaner",
        "backup-vault-cleaner-provider",
    ),
}


def _functions(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        f["Properties"]["FunctionName"].removesuffix(f"-{TEST_SUFFIX}"): (lid, f["Properties"])
        for lid, f in resources(template, "AWS::Lambda::Function")
        if isinstance(f["Properties"].get("FunctionName"), str)
    }


@pytest.mark.parametrize("resource", sorted(CUSTOM_RESOURCES))
@pytest.mark.control("SC-7")
def test_the_framework_answers_for_its_one_handler(synth: Synth, resource: str) -> None:
    """CloudFormation sends the request to the framework's function (in the VPC, in the
    framework's own group), whose environment names the handler; its role may invoke and
    describe that handler and nothing else, and it logs each request at INFO into its own
    encrypted log group."""
    template_name, handler_name, framework_name = CUSTOM_RESOURCES[resource]
    template = synth.raw(template_name)
    functions = _functions(template)
    handler_id, _ = functions[handler_name]
    framework_id, framework = functions[framework_name]
    token = template["Resources"][resource]["Properties"]["ServiceToken"]
    assert token == {"Fn::GetAtt": [framework_id, "Arn"]}
    assert framework["Environment"]["Variables"] == {
        USER_HANDLER_ENV: {"Fn::GetAtt": [handler_id, "Arn"]}
    }
    assert framework["LoggingConfig"]["ApplicationLogLevel"] == "INFO"
    assert "ProviderLogGroup" in framework["LoggingConfig"]["LogGroup"]["Ref"]
    assert "CfnProviderSecurityGroup" in str(framework["VpcConfig"]["SecurityGroupIds"])
    [policy] = [
        p["Properties"]
        for _, p in resources(template, "AWS::IAM::ManagedPolicy")
        if p["Properties"]["ManagedPolicyName"] == f"{framework_name}-policy-{TEST_SUFFIX}"
    ]
    [invoke] = [s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == "InvokeItsHandler"]
    assert sorted(invoke["Action"]) == ["lambda:GetFunction", "lambda:InvokeFunction"]
    assert invoke["Resource"] == {"Fn::GetAtt": [handler_id, "Arn"]}
    # Nothing else in the templates may invoke the handler: one grant, no resource policy.
    grants = [
        statement
        for t in synth.all_raw().values()
        for _, p in resources(t, "AWS::IAM::ManagedPolicy")
        for statement in p["Properties"]["PolicyDocument"]["Statement"]
        if "lambda:InvokeFunction" in statement["Action"]
        and statement["Resource"] == invoke["Resource"]
    ]
    assert grants == [invoke]
    assert [
        lid
        for lid, permission in resources(template, "AWS::Lambda::Permission")
        if permission["Properties"]["FunctionName"] == invoke["Resource"]
    ] == []


def test_the_timeout_rule_looks_through_the_framework(synth: Synth) -> None:
    """The framework's own timeout is 15 minutes; the service timeout needs only cover the
    handler's. The twin: a framework that no longer names its handler is judged by its own
    15 minutes, and the bootstrap's 180 s service timeout then fails."""
    database = copy.deepcopy(synth.raw("database"))
    assert texts(custom_resource_timeout_findings(database)) == []
    framework_id, framework = _functions(database)["txlog-bootstrap-provider"]
    assert framework["Timeout"] == 900
    del database["Resources"][framework_id]["Properties"]["Environment"]
    assert texts(custom_resource_timeout_findings(database)) == [
        "TxlogBootstrapCustomResource: ServiceTimeout 180 s is shorter than the 900 s Lambda "
        "timeout "
        f"of its handler {framework_id}"
    ]


def test_the_handlers_no_longer_reach_s3(synth: Synth) -> None:
    """The handlers only return their result to the framework: their groups allow no HTTPS to
    S3 (any address), which only the framework's group has."""
    network = synth.raw("network")
    egress = {
        g["Properties"]["GroupName"]: g["Properties"].get("SecurityGroupEgress", [])
        for _, g in resources(network, "AWS::EC2::SecurityGroup")
    }
    anywhere = [
        name for name, rules in egress.items() if any(r["CidrIp"] == "0.0.0.0/0" for r in rules)
    ]
    assert anywhere == [f"cfn-provider-sg-{TEST_SUFFIX}"]


@pytest.mark.parametrize("resource", sorted(CUSTOM_RESOURCES))
def test_a_replaced_custom_resource_can_tell_a_stack_deletion(synth: Synth, resource: str) -> None:
    """CloudFormation cannot update a custom resource's ServiceToken, so the resources behind
    the framework carry new logical IDs and an existing stack replaces them; the old one's
    Delete comes during the update's cleanup. Each handler may read its own stack's status (and
    no other stack's) to drop or empty nothing then (tests/runtime: the handlers' twins)."""
    template_name, handler_name, _ = CUSTOM_RESOURCES[resource]
    template = synth.raw(template_name)
    assert not {"TxlogBootstrapResource", "VaultCleanerResource"} & set(template["Resources"])
    [policy] = [
        p["Properties"]
        for _, p in resources(template, "AWS::IAM::ManagedPolicy")
        if p["Properties"]["ManagedPolicyName"] == f"{handler_name}-policy-{TEST_SUFFIX}"
    ]
    [status] = [
        s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == "ReadOwnStackStatus"
    ]
    assert (status["Action"], status["Resource"]) == (
        "cloudformation:DescribeStacks",
        {"Ref": "AWS::StackId"},
    )
