"""Network flows: the templates allow exactly the declared flows, on both ends and routed.

The emulator does not enforce security groups, so these checks over the synthesized templates
are what prove the paths; each test mutates a copy of the synthesis and asserts the finding.
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from typing import Any

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.flows import Network, Synthesis, network_flow_findings
from govdr.compliance.gate import RULE_FIXES, run_own_checks, synth_checks
from govdr.compliance.templates import resources
from govdr.network_flows import (
    BOOTSTRAP,
    BOOTSTRAP_PROVIDER,
    FLOWS,
    VAULT_CLEANER_PROVIDER,
    Flow,
    Gateway,
    Group,
    client_groups,
    markdown_table,
)
from tests.conftest import ROOT, TEST_SUFFIX, Synth

FIX = "declare it in govdr/network_flows.py or remove the rule"
S3_REASON = "answer CloudFormation (pre-signed S3 URL)"
PROVIDERS = f"{BOOTSTRAP_PROVIDER}, {VAULT_CLEANER_PROVIDER}"
# CDK's egress rule that matches no traffic, inline on every group.
NO_TRAFFIC = {
    "CidrIp": "255.255.255.255/32",
    "Description": "Disallow all traffic",
    "FromPort": 252,
    "IpProtocol": "icmp",
    "ToPort": 86,
}


def _templates(synth: Synth) -> dict[str, dict[str, Any]]:
    return copy.deepcopy(synth.all_raw())


def _group_id(network: dict[str, Any], group: Group) -> str:
    [logical_id] = [
        lid
        for lid, r in resources(network, "AWS::EC2::SecurityGroup")
        if r["Properties"]["GroupName"] == f"{group.value}-{TEST_SUFFIX}"
    ]
    return logical_id


def _rule_ids(network: dict[str, Any], rtype: str, group: Group, peer: Group) -> list[str]:
    side = "SourceSecurityGroupId" if rtype.endswith("Ingress") else "DestinationSecurityGroupId"
    return [
        lid
        for lid, r in resources(network, rtype)
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [_group_id(network, group), "GroupId"]}
        and r["Properties"].get(side) == {"Fn::GetAtt": [_group_id(network, peer), "GroupId"]}
    ]


def _pass_group(templates: dict[str, dict[str, Any]], stack: str, construct_id: str) -> str:
    """Pass a Network group into a nested stack as a parameter, the way CDK references it
    across stacks; return the parameter's name."""
    [output] = [o for o in templates["network"]["Outputs"] if f"Network{construct_id}" in o]
    root = templates["root"]
    nested = {
        lid.split("NestedStack")[0].lower(): lid
        for lid, _ in resources(root, "AWS::CloudFormation::Stack")
    }
    parameter = f"referenceto{output}"
    root["Resources"][nested[stack]]["Properties"]["Parameters"][parameter] = {
        "Fn::GetAtt": [nested["network"], f"Outputs.{output}"]
    }
    templates[stack]["Parameters"][parameter] = {"Type": "String"}
    return parameter


def _function(templates: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    for template in templates.values():
        for _, function in resources(template, "AWS::Lambda::Function"):
            if function["Properties"].get("FunctionName") == f"{name}-{TEST_SUFFIX}":
                props: dict[str, Any] = function["Properties"]
                return props
    raise AssertionError(f"no function {name}")


@pytest.mark.control("SC-7")
def test_declared_flows_hold_on_the_synthesis(synth: Synth) -> None:
    assert texts(network_flow_findings(synth.all_raw(), TEST_SUFFIX)) == []


def test_every_in_vpc_function_is_declared(synth: Synth) -> None:
    """Four Lambda functions, the two rotation functions and the custom-resource framework in
    front of each of the two custom-resource handlers run in the VPC."""

    network = Network(Synthesis(synth.all_raw()), TEST_SUFFIX)
    assert sorted(f.name for f in network.functions) == sorted(client_groups())
    assert len(network.functions) == 8


def test_references_across_nested_stacks_are_followed(synth: Synth) -> None:
    """A group reaches the Database stack as a parameter fed by a Network stack output."""
    templates = synth.all_raw()
    bootstrap = _function(templates, BOOTSTRAP)
    [reference] = bootstrap["VpcConfig"]["SecurityGroupIds"]
    assert "Ref" in reference and reference["Ref"] in templates["database"]["Parameters"]
    resolved = Synthesis(templates).resolve("database", reference)
    assert resolved == ("network", _group_id(templates["network"], Group.BOOTSTRAP))


def test_fault_1_the_framework_cannot_answer_cloudformation(synth: Synth) -> None:
    """Fault 1: Custom::TxlogBootstrap's answerer ran in txlog-sg, whose egress allowed only the
    database, EFS and the interface endpoints; its response (an HTTPS PUT to a pre-signed S3 URL,
    through the S3 gateway endpoint) could not leave, and CloudFormation waited an hour. The
    custom-resource framework that answers now has its own group with that egress."""
    templates = _templates(synth)
    network = templates["network"]
    provider_sg = _group_id(network, Group.PROVIDER)
    props = network["Resources"][provider_sg]["Properties"]
    assert props["SecurityGroupEgress"] == [
        {
            "CidrIp": "0.0.0.0/0",
            "Description": "HTTPS to the S3 gateway endpoint (isolated subnets, no internet route)",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        },
        NO_TRAFFIC,
    ]
    # Removing the S3 egress fails the flow.
    props["SecurityGroupEgress"] = [NO_TRAFFIC]
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{provider_sg}: {PROVIDERS} -> S3 gateway endpoint tcp/443 ({S3_REASON}) is not "
        "allowed by the egress of cfn-provider-sg"
    ]


def test_fault_1_https_to_the_vpc_only_does_not_reach_s3(synth: Synth) -> None:
    """HTTPS to an address range inside the VPC does not reach the S3 gateway endpoint (S3's
    addresses are outside the VPC): only HTTPS to any IPv4 address or S3's prefix list does."""
    templates = _templates(synth)
    network = templates["network"]
    provider_sg = _group_id(network, Group.PROVIDER)
    rule = network["Resources"][provider_sg]["Properties"]["SecurityGroupEgress"][0]
    assert rule["CidrIp"] == "0.0.0.0/0"
    rule["CidrIp"] = synth.config.vpc_cidr
    findings = texts(network_flow_findings(templates, TEST_SUFFIX))
    assert (
        f"{provider_sg}: {PROVIDERS} -> S3 gateway endpoint tcp/443 ({S3_REASON}) is not "
        "allowed by the egress of cfn-provider-sg"
    ) in findings


def test_fault_1_the_answerer_in_the_archiver_s_group_fails(synth: Synth) -> None:
    """Fault 1 as it was: the function that answers CloudFormation in txlog-sg (declared there,
    as it ran), which has no egress to S3. The check names the missing egress."""
    templates = _templates(synth)
    txlog_parameter = _pass_group(templates, "database", "TxlogSecurityGroup")
    provider = _function(templates, BOOTSTRAP_PROVIDER)
    provider["VpcConfig"]["SecurityGroupIds"] = [{"Ref": txlog_parameter}]
    as_it_was = tuple(
        replace(f, clients=(BOOTSTRAP_PROVIDER,), source=Group.TXLOG)
        if f.source is Group.PROVIDER
        else f
        for f in FLOWS
    )
    txlog_sg = _group_id(templates["network"], Group.TXLOG)
    findings = texts(network_flow_findings(templates, TEST_SUFFIX, as_it_was))
    assert (
        f"{txlog_sg}: {BOOTSTRAP_PROVIDER} -> S3 gateway endpoint tcp/443 ({S3_REASON}) is not "
        "allowed by the egress of txlog-sg"
    ) in findings
    # With the current declaration the function is also outside its group.
    [lid] = [
        lid
        for lid, r in resources(templates["database"], "AWS::Lambda::Function")
        if r["Properties"]["FunctionName"] == f"{BOOTSTRAP_PROVIDER}-{TEST_SUFFIX}"
    ]
    assert (
        f"{lid}: {BOOTSTRAP_PROVIDER} runs in txlog-sg-{TEST_SUFFIX}, declared in "
        "cfn-provider-sg only"
    ) in texts(network_flow_findings(templates, TEST_SUFFIX))


def test_fault_1_an_in_vpc_answerer_without_an_s3_flow_fails(synth: Synth) -> None:
    """Fault 1 as a class: a custom resource whose service token is a function in the VPC must
    have a declared flow from it to the S3 gateway endpoint, or nothing answers CloudFormation."""
    templates = _templates(synth)
    network = templates["network"]
    provider = _group_id(network, Group.PROVIDER)
    # Neither the declaration nor the group has the framework's S3 flow any more.
    without = tuple(f for f in FLOWS if f.destination is not Gateway.S3)
    network["Resources"][provider]["Properties"]["SecurityGroupEgress"] = [NO_TRAFFIC]
    assert texts(network_flow_findings(templates, TEST_SUFFIX, without)) == [
        f"{resource}: the function CloudFormation sends it to, {answerer}, runs in the VPC but "
        "has no declared flow to the S3 gateway endpoint, so it cannot answer CloudFormation"
        for resource, answerer in (
            ("VaultCleanerCustomResource", VAULT_CLEANER_PROVIDER),
            ("TxlogBootstrapCustomResource", BOOTSTRAP_PROVIDER),
        )
    ]


def test_functions_with_different_needs_share_no_group(synth: Synth) -> None:
    """A group's rules hold for every function in it: the RPO monitor in the framework's
    cfn-provider-sg would reach S3, which only the framework needs."""
    templates = _templates(synth)
    provider_parameter = _pass_group(templates, "monitoring", "CfnProviderSecurityGroup")
    monitor = _function(templates, "rpo-monitor")
    monitor["VpcConfig"]["SecurityGroupIds"] = [{"Ref": provider_parameter}]
    shared = tuple(
        replace(f, source=Group.PROVIDER) if f.source is Group.MONITOR else f for f in FLOWS
    )
    [lid] = [
        lid
        for lid, r in resources(templates["monitoring"], "AWS::Lambda::Function")
        if r["Properties"] is monitor
    ]
    [unused] = _rule_ids(
        templates["network"], "AWS::EC2::SecurityGroupEgress", Group.MONITOR, Group.ENDPOINTS
    )
    assert texts(network_flow_findings(templates, TEST_SUFFIX, shared)) == [
        f"{unused}: egress of rpo-monitor-sg-{TEST_SUFFIX} to vpce-sg-{TEST_SUFFIX} "
        f"(tcp/443-443) is allowed but no declared flow needs it ({FIX})",
        f"{lid}: rpo-monitor runs in cfn-provider-sg, which reaches the S3 gateway endpoint on "
        "tcp/443, and no declared flow of rpo-monitor needs it (give it a group of its own)",
    ]


def test_removing_a_database_ingress_fails(synth: Synth) -> None:
    templates = _templates(synth)
    network = templates["network"]
    [ingress] = _rule_ids(network, "AWS::EC2::SecurityGroupIngress", Group.DATABASE, Group.TXLOG)
    del network["Resources"][ingress]
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{_group_id(network, Group.DATABASE)}: txlog-archiver -> rds-sg tcp/5432 (read the "
        "logical slot) is not allowed by the ingress of rds-sg"
    ]


def test_removing_a_database_egress_fails(synth: Synth) -> None:
    templates = _templates(synth)
    network = templates["network"]
    [egress] = _rule_ids(network, "AWS::EC2::SecurityGroupEgress", Group.ROTATION, Group.DATABASE)
    del network["Resources"][egress]
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{_group_id(network, Group.ROTATION)}: rds-rotation, rds-txlog-rotation -> rds-sg "
        "tcp/5432 (set and test the rotated passwords) is not allowed by the egress of "
        "rotation-sg"
    ]


@pytest.mark.control("AC-6")
def test_adding_an_undeclared_egress_fails(synth: Synth) -> None:
    templates = _templates(synth)
    network = templates["network"]
    ops, db = _group_id(network, Group.OPS), _group_id(network, Group.DATABASE)
    network["Resources"]["OpsToDatabase"] = {
        "Type": "AWS::EC2::SecurityGroupEgress",
        "Properties": {
            "GroupId": {"Fn::GetAtt": [ops, "GroupId"]},
            "DestinationSecurityGroupId": {"Fn::GetAtt": [db, "GroupId"]},
            "IpProtocol": "tcp",
            "FromPort": 5432,
            "ToPort": 5432,
        },
    }
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"OpsToDatabase: egress of ops-sg-{TEST_SUFFIX} to rds-sg-{TEST_SUFFIX} (tcp/5432-5432) "
        f"is allowed but no declared flow needs it ({FIX})"
    ]


def test_widening_a_declared_rule_fails(synth: Synth) -> None:
    """A rule wider than the declared port (here, every TCP port to EFS) is undeclared."""
    templates = _templates(synth)
    network = templates["network"]
    [egress] = _rule_ids(network, "AWS::EC2::SecurityGroupEgress", Group.TXLOG, Group.FILE_SYSTEM)
    network["Resources"][egress]["Properties"].update(FromPort=0, ToPort=65535)
    txlog = _group_id(network, Group.TXLOG)
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{txlog}: txlog-archiver -> efs-sg tcp/2049 (write the archive (NFS/TLS)) is not "
        "allowed by the egress of txlog-sg",
        f"{egress}: egress of txlog-sg-{TEST_SUFFIX} to efs-sg-{TEST_SUFFIX} (tcp/0-65535) is "
        f"allowed but no declared flow needs it ({FIX})",
    ]


def test_a_group_without_egress_rules_allows_everything_and_fails(synth: Synth) -> None:
    """EC2 gives a group created without egress rules an allow-all egress rule."""
    templates = _templates(synth)
    network = templates["network"]
    efs = _group_id(network, Group.FILE_SYSTEM)
    network["Resources"][efs]["Properties"].pop("SecurityGroupEgress")
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{efs} (EC2's default egress): egress of efs-sg-{TEST_SUFFIX} to 0.0.0.0/0 (all "
        f"traffic) is allowed but no declared flow needs it ({FIX})"
    ]


def test_every_group_is_created_with_an_inline_egress_rule(synth: Synth) -> None:
    """A group created without inline egress rules gets EC2's allow-all egress rule, which
    separate AWS::EC2::SecurityGroupEgress resources do not remove; each group carries at
    least the rule that matches no traffic."""
    network = synth.raw("network")
    groups = list(resources(network, "AWS::EC2::SecurityGroup"))
    assert len(groups) == len(Group)
    for logical_id, group in groups:
        assert group["Properties"].get("SecurityGroupEgress"), logical_id


@pytest.mark.parametrize("group", [Group.TXLOG, Group.ROTATION, Group.MONITOR])
def test_a_group_whose_egress_is_only_separate_rules_allows_everything_and_fails(
    synth: Synth, group: Group
) -> None:
    """The groups whose egress goes only to other groups (separate egress resources): without
    their inline placeholder, EC2's default egress stays beside those rules."""
    templates = _templates(synth)
    network = templates["network"]
    logical_id = _group_id(network, group)
    assert [
        r
        for _, r in resources(network, "AWS::EC2::SecurityGroupEgress")
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [logical_id, "GroupId"]}
    ]
    network["Resources"][logical_id]["Properties"].pop("SecurityGroupEgress")
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{logical_id} (EC2's default egress): egress of {group.value}-{TEST_SUFFIX} to "
        f"0.0.0.0/0 (all traffic) is allowed but no declared flow needs it ({FIX})"
    ]


def test_removing_the_endpoint_route_table_association_fails(synth: Synth) -> None:
    templates = _templates(synth)
    network = templates["network"]
    [(endpoint_id, endpoint)] = [
        (lid, r)
        for lid, r in resources(network, "AWS::EC2::VPCEndpoint")
        if r["Properties"]["VpcEndpointType"] == "Gateway"
    ]
    tables = endpoint["Properties"]["RouteTableIds"]
    removed = next(t for t in tables if "Functions" in t["Ref"])
    tables.remove(removed)
    [subnet] = [
        r["Properties"]["SubnetId"]["Ref"]
        for _, r in resources(network, "AWS::EC2::SubnetRouteTableAssociation")
        if r["Properties"]["RouteTableId"] == removed
    ]
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{endpoint_id}: the route table of subnet {subnet} is not associated with the S3 "
        f"gateway endpoint, so {client} has no route for {PROVIDERS} -> S3 gateway endpoint "
        f"tcp/443"
        for client in (VAULT_CLEANER_PROVIDER, BOOTSTRAP_PROVIDER)
    ]


def test_unresolvable_subnets_fail_closed(synth: Synth) -> None:
    templates = _templates(synth)
    provider = _function(templates, BOOTSTRAP_PROVIDER)
    provider["VpcConfig"]["SubnetIds"] = [{"Ref": "NoSuchParameter"}]
    [lid] = [
        lid
        for lid, r in resources(templates["database"], "AWS::Lambda::Function")
        if r["Properties"] is provider
    ]
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{lid}: the subnets of {BOOTSTRAP_PROVIDER} cannot be resolved, so its route for "
        f"{PROVIDERS} -> S3 gateway endpoint tcp/443 cannot be proved"
    ]


@pytest.mark.control("SC-7")
def test_a_route_beyond_the_endpoints_fails(synth: Synth) -> None:
    """HTTPS to any address stands for the S3 gateway endpoint only while the subnets route
    nowhere else."""
    templates = _templates(synth)
    network = templates["network"]
    table = next(
        lid
        for lid, _ in resources(network, "AWS::EC2::RouteTable")
        if lid.startswith("VpcFunctionsSubnet1")
    )
    network["Resources"]["DefaultRoute"] = {
        "Type": "AWS::EC2::Route",
        "Properties": {
            "RouteTableId": {"Ref": table},
            "DestinationCidrBlock": "0.0.0.0/0",
            "NatGatewayId": "nat-0123456789abcdef0",
        },
    }
    findings = texts(network_flow_findings(templates, TEST_SUFFIX))
    assert len(findings) == 1
    assert re.fullmatch(
        r"DefaultRoute: route in a route table of (txlog-bootstrap-provider|"
        r"backup-vault-cleaner-provider), whose security group allows HTTPS to any address: "
        r"the function would reach beyond the VPC endpoints",
        findings[0],
    )


def test_a_missing_interface_endpoint_fails(synth: Synth) -> None:
    templates = _templates(synth)
    network = templates["network"]
    [endpoint] = [
        lid
        for lid, r in resources(network, "AWS::EC2::VPCEndpoint")
        if str(r["Properties"]["ServiceName"]).endswith(".backup")
    ]
    del network["Resources"][endpoint]
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{_group_id(network, Group.ENDPOINTS)}: no interface endpoint for backup with private "
        "DNS in vpce-sg, needed by backup-vault-cleaner -> vpce-sg (backup) tcp/443"
    ]


def test_an_undeclared_function_and_a_missing_client_fail(synth: Synth) -> None:
    templates = _templates(synth)
    provider = _function(templates, BOOTSTRAP_PROVIDER)
    provider["FunctionName"] = f"txlog-helper-{TEST_SUFFIX}"
    [lid] = [
        lid
        for lid, r in resources(templates["database"], "AWS::Lambda::Function")
        if r["Properties"] is provider
    ]
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"{lid}: in-VPC function txlog-helper has no declared flows (govdr/network_flows.py)",
        f"network-flows: declared client {BOOTSTRAP_PROVIDER} is not an in-VPC function of this "
        "synthesis",
        "TxlogBootstrapCustomResource: the function CloudFormation sends it to, txlog-helper, "
        "runs in "
        "the VPC but has no declared flow to the S3 gateway endpoint, so it cannot answer "
        "CloudFormation",
    ]


def test_an_undeclared_security_group_fails(synth: Synth) -> None:
    templates = _templates(synth)
    network = templates["network"]
    network["Resources"]["Stray"] = copy.deepcopy(
        network["Resources"][_group_id(network, Group.FILE_SYSTEM)]
    )
    network["Resources"]["Stray"]["Properties"]["GroupName"] = f"stray-sg-{TEST_SUFFIX}"
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == [
        f"Stray: security group stray-sg-{TEST_SUFFIX} is not a group of govdr/network_flows.py"
    ]


def test_a_client_in_two_groups_is_a_clear_error() -> None:
    flows = (
        *FLOWS,
        Flow((BOOTSTRAP,), Group.OPS, Gateway.S3, 443, "a second group"),
    )
    with pytest.raises(ValueError, match="txlog-bootstrap is declared in txlog-bootstrap-sg"):
        client_groups(flows)


def test_the_gate_runs_network_flows_over_the_whole_synthesis(synth: Synth) -> None:
    assert "network-flows" in synth_checks(synth.config)
    assert "network-flows" in RULE_FIXES
    templates = _templates(synth)
    network = templates["network"]
    network["Resources"][_group_id(network, Group.PROVIDER)]["Properties"][
        "SecurityGroupEgress"
    ] = []
    rules = {rule for rule, _, _ in run_own_checks(synth.config, templates)}
    assert rules == {"network-flows"}


def test_the_architecture_document_shows_the_declaration() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert markdown_table() in text


def test_the_s3_prefix_list_stands_for_the_gateway_endpoint(synth: Synth) -> None:
    """Egress to a managed prefix list (S3's, looked up at deploy time) serves the S3 flow as
    well as HTTPS to any address; a customer-managed prefix list of the templates does not."""
    templates = _templates(synth)
    network = templates["network"]
    provider_sg = _group_id(network, Group.PROVIDER)
    rule, placeholder = network["Resources"][provider_sg]["Properties"]["SecurityGroupEgress"]
    assert placeholder == NO_TRAFFIC
    rule.pop("CidrIp")
    rule["DestinationPrefixListId"] = "pl-0123456789abcdef0"
    assert texts(network_flow_findings(templates, TEST_SUFFIX)) == []
    network["Resources"]["OwnList"] = {
        "Type": "AWS::EC2::PrefixList",
        "Properties": {"AddressFamily": "IPv4", "MaxEntries": 1, "PrefixListName": "own"},
    }
    rule["DestinationPrefixListId"] = {"Fn::GetAtt": ["OwnList", "PrefixListId"]}
    findings = texts(network_flow_findings(templates, TEST_SUFFIX))
    assert (
        f"{provider_sg}: {PROVIDERS} -> S3 gateway endpoint tcp/443 ({S3_REASON}) is not "
        "allowed by the egress of cfn-provider-sg"
    ) in findings
    assert (
        f"{provider_sg}: egress of cfn-provider-sg-{TEST_SUFFIX} to OwnList "
        f"(tcp/443-443) is allowed but no declared flow needs it ({FIX})"
    ) in findings
