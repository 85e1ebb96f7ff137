"""Network: three AZs, isolated subnets, endpoints, least-privilege security groups."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aws_cdk.assertions import Match

from govdr.compliance.finding import texts
from govdr.compliance.rules.no_open_ingress import open_ingress_findings
from govdr.compliance.templates import resources
from govdr.network_flows import flows_for
from govdr.stacks.network import (
    FLOW_ENDPOINTS,
    INTERFACE_ENDPOINTS,
    interface_endpoints,
    subnet_mask,
)
from tests.conftest import TEST_SUFFIX, Synth

AZS = ["eu-central-2a", "eu-central-2b", "eu-central-2c"]


def test_vpc_cidr_dns_and_name(synth: Synth) -> None:
    synth.nested("network").has_resource_properties(
        "AWS::EC2::VPC",
        {
            "CidrBlock": "10.40.0.0/16",
            "EnableDnsHostnames": True,
            "EnableDnsSupport": True,
            "Tags": Match.array_with([{"Key": "Name", "Value": f"vpc-{TEST_SUFFIX}"}]),
        },
    )


def test_six_isolated_subnets_over_the_three_real_azs(synth: Synth) -> None:
    subnets = dict(resources(synth.raw("network"), "AWS::EC2::Subnet"))
    assert len(subnets) == 6
    azs = sorted(s["Properties"]["AvailabilityZone"] for s in subnets.values())
    assert azs == sorted(AZS * 2)
    for subnet in subnets.values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
        tags = {t["Key"]: t["Value"] for t in subnet["Properties"]["Tags"]}
        assert tags["aws-cdk:subnet-type"] == "Isolated"
    names = sorted(
        {
            t["Value"]
            for s in subnets.values()
            for t in s["Properties"]["Tags"]
            if t["Key"] == "aws-cdk:subnet-name"
        }
    )
    assert names == ["Database", "Functions"]


@pytest.mark.control("SC-7")
def test_no_internet_path(synth: Synth) -> None:
    network = synth.raw("network")
    types = {r["Type"] for r in network["Resources"].values()}
    for forbidden in (
        "AWS::EC2::InternetGateway",
        "AWS::EC2::NatGateway",
        "AWS::EC2::EIP",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::EgressOnlyInternetGateway",
    ):
        assert forbidden not in types
    for _, route in resources(network, "AWS::EC2::Route"):
        assert "GatewayId" not in route["Properties"]


@pytest.mark.parametrize("service", sorted({**INTERFACE_ENDPOINTS, **FLOW_ENDPOINTS}))
def test_interface_endpoint_per_service(synth: Synth, service: str) -> None:
    short = {**INTERFACE_ENDPOINTS, **FLOW_ENDPOINTS}[service].short_name
    endpoints = [
        r["Properties"]
        for _, r in resources(synth.raw("network"), "AWS::EC2::VPCEndpoint")
        if r["Properties"].get("VpcEndpointType") == "Interface"
        and short in str(r["Properties"]["ServiceName"])
    ]
    assert len(endpoints) == 1, service
    endpoint = endpoints[0]
    assert endpoint["PrivateDnsEnabled"] is True
    assert len(endpoint["SubnetIds"]) == 3
    assert len(endpoint["SecurityGroupIds"]) == 1


def _interface_services(template: dict[str, Any]) -> set[str]:
    names = [
        str(r["Properties"]["ServiceName"])
        for _, r in resources(template, "AWS::EC2::VPCEndpoint")
        if r["Properties"].get("VpcEndpointType") == "Interface"
    ]
    services = {
        svc.short_name
        for svc in {**INTERFACE_ENDPOINTS, **FLOW_ENDPOINTS}.values()
        if any(f".{svc.short_name}" in n for n in names)
    }
    assert len(names) == len(services), names  # no endpoint of a service outside both lists
    return services


def test_endpoints_follow_the_flows_of_each_synthesis(synth: Synth, prod_synth: Synth) -> None:
    """The CloudFormation endpoint serves the bootstrap and the vault cleaner: the bootstrap is
    built with the prod switch too, so both syntheses have it."""
    platform = {svc.short_name for svc in INTERFACE_ENDPOINTS.values()}
    assert _interface_services(synth.raw("network")) == platform | {"cloudformation"}
    assert _interface_services(prod_synth.raw("network")) == platform | {"cloudformation"}


def test_interface_endpoints_add_a_flow_endpoint_only_for_a_declared_flow() -> None:
    assert "CloudFormation" in interface_endpoints(flows_for(retain_data=False))
    assert "CloudFormation" in interface_endpoints(flows_for(retain_data=True))
    # The twin: flows that call CloudFormation nowhere build no endpoint for it.
    without = tuple(f for f in flows_for(retain_data=True) if f.service != "cloudformation")
    assert "CloudFormation" not in interface_endpoints(without)
    assert set(interface_endpoints(without)) == set(INTERFACE_ENDPOINTS)


def test_s3_gateway_endpoint_on_all_route_tables(synth: Synth) -> None:
    gateways = [
        r["Properties"]
        for _, r in resources(synth.raw("network"), "AWS::EC2::VPCEndpoint")
        if r["Properties"].get("VpcEndpointType") == "Gateway"
    ]
    assert len(gateways) == 1
    assert "s3" in str(gateways[0]["ServiceName"])
    assert len(gateways[0]["RouteTableIds"]) == 6


@pytest.mark.control("SC-7")
def test_default_security_group_is_closed(synth: Synth) -> None:
    synth.nested("network").resource_count_is("Custom::VpcRestrictDefaultSG", 1)


def _sg_ids(network: dict[str, Any]) -> dict[str, str]:
    return {
        r["Properties"]["GroupName"]: lid
        for lid, r in resources(network, "AWS::EC2::SecurityGroup")
    }


def test_every_security_group_is_named_described_and_closed_outbound(synth: Synth) -> None:
    network = synth.raw("network")
    groups = dict(resources(network, "AWS::EC2::SecurityGroup"))
    assert {g["Properties"]["GroupName"] for g in groups.values()} == {
        f"{n}-{TEST_SUFFIX}"
        for n in (
            "vpce-sg",
            "rds-sg",
            "rotation-sg",
            "txlog-sg",
            "txlog-bootstrap-sg",
            "efs-sg",
            "ops-sg",
            "rpo-monitor-sg",
            "cfn-provider-sg",
        )
    }
    for group in groups.values():
        props = group["Properties"]
        assert len(props["GroupDescription"]) > 20
        inline_egress = props.get("SecurityGroupEgress", [])
        if props["GroupName"] == f"cfn-provider-sg-{TEST_SUFFIX}":
            # CDK's custom-resource framework answers on a pre-signed S3 URL: HTTPS only, which
            # the isolated subnets route to the S3 gateway endpoint and nowhere else.
            assert inline_egress == [
                {
                    "CidrIp": "0.0.0.0/0",
                    "Description": (
                        "HTTPS to the S3 gateway endpoint (isolated subnets, no internet route)"
                    ),
                    "FromPort": 443,
                    "IpProtocol": "tcp",
                    "ToPort": 443,
                },
                NO_TRAFFIC,
            ]
            continue
        # Every other group's only inline egress rule matches no traffic: without an inline
        # rule, EC2 would add its allow-all egress rule to the group.
        assert inline_egress == [NO_TRAFFIC], props["GroupName"]


NO_TRAFFIC = {
    "CidrIp": "255.255.255.255/32",
    "Description": "Disallow all traffic",
    "FromPort": 252,
    "IpProtocol": "icmp",
    "ToPort": 86,
}


def _rules(network: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [r["Properties"] for _, r in resources(network, rtype)]


@pytest.mark.control("AC-6")
def test_database_ingress_only_postgres_from_rotation_txlog_and_bootstrap(synth: Synth) -> None:
    network = synth.raw("network")
    ids = _sg_ids(network)
    db = ids[f"rds-sg-{TEST_SUFFIX}"]
    ingress = [
        r
        for r in _rules(network, "AWS::EC2::SecurityGroupIngress")
        if r["GroupId"] == {"Fn::GetAtt": [db, "GroupId"]}
    ]
    sources = sorted(r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in ingress)
    assert sources == sorted(
        ids[f"{n}-{TEST_SUFFIX}"] for n in ("rotation-sg", "txlog-sg", "txlog-bootstrap-sg")
    )
    for rule in ingress:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
        assert rule["Description"]


def test_efs_ingress_only_nfs_from_txlog(synth: Synth) -> None:
    network = synth.raw("network")
    ids = _sg_ids(network)
    efs = ids[f"efs-sg-{TEST_SUFFIX}"]
    ingress = [
        r
        for r in _rules(network, "AWS::EC2::SecurityGroupIngress")
        if r["GroupId"] == {"Fn::GetAtt": [efs, "GroupId"]}
    ]
    assert len(ingress) == 1
    assert ingress[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0] == ids[f"txlog-sg-{TEST_SUFFIX}"]
    assert (ingress[0]["FromPort"], ingress[0]["ToPort"]) == (2049, 2049)


def test_endpoint_ingress_is_https_from_literal_vpc_cidr(synth: Synth) -> None:
    network = synth.raw("network")
    endpoint_sg = network["Resources"][_sg_ids(network)[f"vpce-sg-{TEST_SUFFIX}"]]
    assert endpoint_sg["Properties"]["SecurityGroupIngress"] == [
        {
            "CidrIp": "10.40.0.0/16",
            "Description": "HTTPS to AWS APIs from workloads in this VPC",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]


def test_egress_rules_have_explicit_ports_and_descriptions(synth: Synth) -> None:
    for rule in _rules(synth.raw("network"), "AWS::EC2::SecurityGroupEgress"):
        assert rule["IpProtocol"] == "tcp"
        assert rule["FromPort"] == rule["ToPort"]
        assert rule["FromPort"] in (443, 2049, 5432)
        assert "DestinationSecurityGroupId" in rule
        assert rule["Description"]


@pytest.mark.control("SC-7")
def test_no_open_ingress_and_its_failing_twin(synth: Synth) -> None:
    network = synth.raw("network")
    assert texts(open_ingress_findings(network)) == []
    mutated = copy.deepcopy(network)
    lid = _sg_ids(mutated)[f"vpce-sg-{TEST_SUFFIX}"]
    mutated["Resources"][lid]["Properties"]["SecurityGroupIngress"][0]["CidrIp"] = "0.0.0.0/0"
    assert texts(open_ingress_findings(mutated)) == [f"{lid}: ingress open to the internet"]
    mutated2 = copy.deepcopy(network)
    mutated2["Resources"]["Open"] = {
        "Type": "AWS::EC2::SecurityGroupIngress",
        "Properties": {"CidrIpv6": "::/0", "IpProtocol": "-1"},
    }
    assert texts(open_ingress_findings(mutated2)) == ["Open: ingress open to the internet"]


@pytest.mark.parametrize(
    ("cidr", "mask"), [("10.0.0.0/16", 19), ("10.0.0.0/24", 27), ("172.16.0.0/20", 23)]
)
def test_subnet_mask_fits_six_subnets(cidr: str, mask: int) -> None:
    assert subnet_mask(cidr) == mask
    assert 2 ** (mask - int(cidr.split("/")[1])) >= 6
