"""Gate rule ``network-flows``: the templates allow exactly the flows of govdr.network_flows.

Security groups are stateful and evaluated on both ends: a connection from a function to a
server needs an egress rule on the function's group that admits the server and an ingress
rule on the server's group that admits the function; a rule that names another group admits
the network interfaces carrying that group
(https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html,
https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html). A group created
without any egress rule keeps EC2's default rule that allows all outbound traffic
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ec2-securitygroup.html).
A gateway endpoint has no security group: traffic reaches it when the route table of the
client's subnet is associated with it
(https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-s3.html,
https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html).

The emulator does not enforce security groups, so this check is what proves the paths. It
reads the whole synthesis at once: groups live in the Network stack and reach the other
stacks as nested-stack parameters fed by the Network stack's outputs, which are followed here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.templates import Template, as_list
from govdr.constructs.custom_resources import is_custom_resource
from govdr.naming import name
from govdr.network_flows import FLOWS, SERVERS, Flow, Gateway, Group, client_groups

RULE = "network-flows"
FIX = (
    "declare the flow in govdr/network_flows.py (the Network stack builds the rules from "
    "it), or remove the rule or function that no declared flow needs"
)


Ref = tuple[str, str]  # (template name, logical ID)
ANY_IPV4 = "0.0.0.0/0"
DECLARATION = "govdr/network_flows.py"


@dataclass(frozen=True)
class Rule:
    """One security-group rule: ``peer`` is a group (Ref), a CIDR (str) or a prefix list."""

    where: str
    direction: str  # "egress" or "ingress"
    group: Ref
    protocol: str
    from_port: int | None
    to_port: int | None
    peer: Ref | str | None
    peer_kind: str  # "group", "cidr", "prefix-list" or "unknown"

    def is_port(self, port: int) -> bool:
        """Exactly TCP ``port``: a wider rule allows more than any one flow needs."""
        return self.protocol in ("tcp", "6") and self.from_port == self.to_port == port


@dataclass(frozen=True)
class Function:
    """An in-VPC function (a Lambda function or a hosted rotation function)."""

    where: str
    name: str
    groups: frozenset[Ref]
    subnets: frozenset[Ref]
    template: str = ""


def _is_placeholder(rule: dict[str, Any]) -> bool:
    """CDK's "disallow all traffic" egress: ICMP type 252 code 86 to 255.255.255.255/32."""
    return (
        rule.get("CidrIp") == "255.255.255.255/32"
        and rule.get("IpProtocol") == "icmp"
        and rule.get("FromPort") == 252
        and rule.get("ToPort") == 86
    )


def _port(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _literal(value: Any) -> str | None:
    """A string, or the literal parts of an Fn::Join with pseudo parameters left as ``*``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        rendered = [
            _literal(p) if not isinstance(p, dict) or "Ref" not in p else "*" for p in parts
        ]
        if all(isinstance(p, str) for p in rendered):
            return str(separator).join(str(p) for p in rendered)
    return None


class Synthesis:
    """The templates of one synthesis with cross-stack references followed."""

    def __init__(self, templates: dict[str, Template]) -> None:
        self.templates = templates

    def resources(self, rtype: str) -> Iterator[tuple[Ref, dict[str, Any]]]:
        for tname, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource.get("Type") == rtype:
                    props = resource.get("Properties", {})
                    yield (tname, logical_id), props if isinstance(props, dict) else {}

    def resource_type(self, ref: Ref) -> str | None:
        resource = self.templates.get(ref[0], {}).get("Resources", {}).get(ref[1])
        return str(resource.get("Type")) if isinstance(resource, dict) else None

    def _stack_template(self, tname: str, stack_id: str, output: str | None) -> str | None:
        """The template that nested-stack resource ``stack_id`` of ``tname`` deploys: the one
        whose parameters are the resource's parameters (and that has ``output``)."""
        resource = self.templates[tname].get("Resources", {}).get(stack_id, {})
        if resource.get("Type") != "AWS::CloudFormation::Stack":
            return None
        passed = set(resource.get("Properties", {}).get("Parameters", {}) or {})
        found = [
            name_
            for name_, template in self.templates.items()
            if name_ != tname
            and set(template.get("Parameters", {}) or {}) == passed
            and (output is None or output in template.get("Outputs", {}))
        ]
        return found[0] if len(found) == 1 else None

    def resolve(self, tname: str, value: Any, depth: int = 0) -> Ref | str | None:
        """A literal string, the resource a Ref/GetAtt points to (across stacks), or None."""
        if isinstance(value, str):
            return value
        if not isinstance(value, dict) or depth > 10:
            return None
        template = self.templates.get(tname, {})
        if "Ref" in value:
            target = value["Ref"]
            if target in template.get("Resources", {}):
                return (tname, target)
            if target in (template.get("Parameters", {}) or {}):
                return self._parameter(tname, target, depth)
            return None
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            logical_id, attribute = (
                target.split(".", 1) if isinstance(target, str) else (target[0], target[1])
            )
            if str(attribute).startswith("Outputs."):
                output = str(attribute).removeprefix("Outputs.")
                child = self._stack_template(tname, logical_id, output)
                if child is None:
                    return None
                out_value = self.templates[child]["Outputs"][output].get("Value")
                return self.resolve(child, out_value, depth + 1)
            if logical_id in template.get("Resources", {}):
                return (tname, logical_id)
        return None

    def _parameter(self, tname: str, parameter: str, depth: int) -> Ref | str | None:
        results = set()
        for parent, template in self.templates.items():
            for stack_id, resource in template.get("Resources", {}).items():
                passed = resource.get("Properties", {}).get("Parameters", {}) or {}
                if (
                    resource.get("Type") == "AWS::CloudFormation::Stack"
                    and parameter in passed
                    and self._stack_template(parent, stack_id, None) == tname
                ):
                    results.add(self.resolve(parent, passed[parameter], depth + 1))
        return results.pop() if len(results) == 1 else None

    def refs(self, tname: str, value: Any) -> set[Ref]:
        """Every resource a value refers to, at any depth (lists, joins)."""
        found: set[Ref] = set()
        if isinstance(value, list):
            for item in value:
                found |= self.refs(tname, item)
        elif isinstance(value, dict):
            if "Ref" in value or "Fn::GetAtt" in value:
                resolved = self.resolve(tname, value)
                if isinstance(resolved, tuple):
                    found.add(resolved)
            else:
                for item in value.values():
                    found |= self.refs(tname, item)
        return found


class Network:
    """Groups, rules, functions, endpoints and routes of a synthesis."""

    def __init__(self, synthesis: Synthesis, suffix: str) -> None:
        self.synthesis = synthesis
        self.findings: list[Finding] = []
        self.groups: dict[Group, Ref] = {}
        self.group_names: dict[Ref, str] = {}
        self.rules: list[Rule] = []
        self.vpc_cidrs = [
            ipaddress.IPv4Network(props["CidrBlock"])
            for _, props in synthesis.resources("AWS::EC2::VPC")
            if isinstance(props.get("CidrBlock"), str)
        ]
        self._inline_egress: set[Ref] = set()  # groups created with inline egress rules
        by_name = {name(group.value, suffix): group for group in Group}
        for ref, props in synthesis.resources("AWS::EC2::SecurityGroup"):
            group_name = props.get("GroupName")
            self.group_names[ref] = str(group_name)
            group = by_name.get(str(group_name))
            if group is None:
                self.findings.append(
                    Finding(ref[1], f"security group {group_name} is not a group of {DECLARATION}")
                )
            else:
                self.groups[group] = ref
            self._inline_rules(ref, props)
        for direction, rtype in (
            ("ingress", "AWS::EC2::SecurityGroupIngress"),
            ("egress", "AWS::EC2::SecurityGroupEgress"),
        ):
            for ref, props in synthesis.resources(rtype):
                group_ref = synthesis.resolve(ref[0], props.get("GroupId"))
                if not isinstance(group_ref, tuple):
                    self.findings.append(Finding(ref[1], f"{direction} rule of an unknown group"))
                    continue
                self.rules.append(self._rule(ref[1], direction, group_ref, ref[0], props))
        for ref in self.group_names:
            if ref not in self._inline_egress:
                # No inline egress rule: EC2 adds its allow-all egress rule when it creates the
                # group, and separate AWS::EC2::SecurityGroupEgress resources leave it in place
                # ("if you do not add egress rules, we add egress rules that allow all
                # outbound IPv4 and IPv6 traffic"):
                # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-securitygroup.html
                self.rules.append(
                    Rule(
                        f"{ref[1]} (EC2's default egress)",
                        "egress",
                        ref,
                        "-1",
                        None,
                        None,
                        ANY_IPV4,
                        "cidr",
                    )
                )
        self.functions = list(self._functions(suffix))

    def _inline_rules(self, ref: Ref, props: dict[str, Any]) -> None:
        for direction, key in (
            ("ingress", "SecurityGroupIngress"),
            ("egress", "SecurityGroupEgress"),
        ):
            for rule in as_list(props.get(key, [])):
                if not isinstance(rule, dict):
                    continue
                if direction == "egress":
                    self._inline_egress.add(ref)
                if direction == "egress" and _is_placeholder(rule):
                    continue
                self.rules.append(self._rule(ref[1], direction, ref, ref[0], rule))

    def _rule(
        self, where: str, direction: str, group: Ref, tname: str, props: dict[str, Any]
    ) -> Rule:
        side = "Source" if direction == "ingress" else "Destination"
        peer: Ref | str | None = None
        kind = "unknown"
        if f"{side}SecurityGroupId" in props:
            resolved = self.synthesis.resolve(tname, props[f"{side}SecurityGroupId"])
            peer, kind = (resolved, "group") if isinstance(resolved, tuple) else (None, "unknown")
        elif isinstance(props.get("CidrIp"), str):
            peer, kind = props["CidrIp"], "cidr"
        elif isinstance(props.get("CidrIpv6"), str):
            peer, kind = props["CidrIpv6"], "cidr"
        elif f"{side}PrefixListId" in props:
            resolved = self.synthesis.resolve(tname, props[f"{side}PrefixListId"])
            if isinstance(resolved, tuple) and self.synthesis.resource_type(resolved) == (
                "AWS::EC2::PrefixList"
            ):
                peer, kind = resolved, "unknown"  # a customer-managed list is not S3's
            else:
                peer, kind = None, "prefix-list"
        protocol = str(props.get("IpProtocol", ""))
        return Rule(
            where,
            direction,
            group,
            protocol,
            _port(props.get("FromPort")),
            _port(props.get("ToPort")),
            peer,
            kind,
        )

    def _functions(self, suffix: str) -> Iterator[Function]:
        synthesis = self.synthesis
        for (tname, logical_id), props in synthesis.resources("AWS::Lambda::Function"):
            vpc = props.get("VpcConfig")
            if not isinstance(vpc, dict):
                continue
            yield Function(
                logical_id,
                str(props.get("FunctionName", logical_id)).removesuffix(f"-{suffix}"),
                frozenset(synthesis.refs(tname, vpc.get("SecurityGroupIds"))),
                frozenset(synthesis.refs(tname, vpc.get("SubnetIds"))),
                tname,
            )
        for (tname, logical_id), props in synthesis.resources(
            "AWS::SecretsManager::RotationSchedule"
        ):
            hosted = props.get("HostedRotationLambda")
            if not isinstance(hosted, dict) or "VpcSecurityGroupIds" not in hosted:
                continue
            yield Function(
                logical_id,
                str(hosted.get("RotationLambdaName", logical_id)).removesuffix(f"-{suffix}"),
                frozenset(synthesis.refs(tname, hosted.get("VpcSecurityGroupIds"))),
                frozenset(synthesis.refs(tname, hosted.get("VpcSubnetIds"))),
                tname,
            )

    def covers_vpc(self, cidr: str) -> bool:
        """The CIDR admits every address of the VPC (so every group inside it)."""
        try:
            network = ipaddress.ip_network(cidr)
        except ValueError:
            return False
        return bool(self.vpc_cidrs) and all(
            isinstance(network, ipaddress.IPv4Network) and vpc.subnet_of(network)
            for vpc in self.vpc_cidrs
        )

    def leaves_vpc(self, cidr: str) -> bool:
        try:
            network = ipaddress.ip_network(cidr)
        except ValueError:
            return True
        return not any(
            isinstance(network, ipaddress.IPv4Network) and network.subnet_of(vpc)
            for vpc in self.vpc_cidrs
        )

    def egress_covers(self, rule: Rule, destination: Group | Gateway) -> bool:
        if destination is Gateway.S3:
            return rule.peer_kind == "prefix-list" or (
                rule.peer_kind == "cidr" and rule.peer == ANY_IPV4
            )
        if rule.peer_kind == "group":
            return rule.peer == self.groups.get(destination)
        return (
            rule.peer_kind == "cidr" and isinstance(rule.peer, str) and self.covers_vpc(rule.peer)
        )

    def ingress_covers(self, rule: Rule, source: Group) -> bool:
        if rule.peer_kind == "group":
            return rule.peer == self.groups.get(source)
        # Only the VPC's own CIDR stands for "any group in this VPC".
        return rule.peer_kind == "cidr" and any(rule.peer == str(vpc) for vpc in self.vpc_cidrs)


def _interface_endpoints(synthesis: Synthesis) -> list[tuple[Ref, str, set[Ref], bool]]:
    """(endpoint, service, security groups, private DNS) of every interface endpoint."""
    found = []
    for ref, props in synthesis.resources("AWS::EC2::VPCEndpoint"):
        if props.get("VpcEndpointType") != "Interface":
            continue
        service = (_literal(props.get("ServiceName")) or "").split(".", 3)[-1]
        found.append(
            (
                ref,
                service,
                synthesis.refs(ref[0], props.get("SecurityGroupIds")),
                props.get("PrivateDnsEnabled") is True,
            )
        )
    return found


def _s3_gateways(synthesis: Synthesis) -> list[tuple[Ref, set[Ref]]]:
    return [
        (ref, synthesis.refs(ref[0], props.get("RouteTableIds")))
        for ref, props in synthesis.resources("AWS::EC2::VPCEndpoint")
        if props.get("VpcEndpointType") == "Gateway"
        and (_literal(props.get("ServiceName")) or "").endswith(".s3")
    ]


def _route_tables(synthesis: Synthesis) -> dict[Ref, set[Ref]]:
    """Subnet -> the route tables associated with it."""
    tables: dict[Ref, set[Ref]] = {}
    for ref, props in synthesis.resources("AWS::EC2::SubnetRouteTableAssociation"):
        subnet = synthesis.resolve(ref[0], props.get("SubnetId"))
        table = synthesis.resolve(ref[0], props.get("RouteTableId"))
        if isinstance(subnet, tuple) and isinstance(table, tuple):
            tables.setdefault(subnet, set()).add(table)
    return tables


def _server_groups(synthesis: Synthesis) -> dict[str, set[Ref]]:
    """Resource type -> the groups its resources carry."""
    carried: dict[str, set[Ref]] = {}
    for rtype, key in (
        ("AWS::RDS::DBInstance", "VPCSecurityGroups"),
        ("AWS::EFS::MountTarget", "SecurityGroups"),
        ("AWS::EC2::VPCEndpoint", "SecurityGroupIds"),
    ):
        for ref, props in synthesis.resources(rtype):
            carried.setdefault(rtype, set()).update(synthesis.refs(ref[0], props.get(key)))
    return carried


def _peer_label(network: Network, rule: Rule) -> str:
    if isinstance(rule.peer, tuple):
        return network.group_names.get(rule.peer, rule.peer[1])
    if rule.peer_kind == "prefix-list":
        return "a prefix list"
    return str(rule.peer)


def _ports(rule: Rule) -> str:
    if rule.protocol == "-1":
        return "all traffic"
    return f"{rule.protocol}/{rule.from_port}-{rule.to_port}"


def _allowed(
    network: Network, flow: Flow, direction: str, group: Ref, covers: Callable[[Rule], bool]
) -> bool:
    """A rule of ``group`` in ``direction`` on the flow's port whose peer ``covers``."""
    return any(
        r.direction == direction and r.group == group and r.is_port(flow.port) and covers(r)
        for r in network.rules
    )


def _unless_allowed(
    network: Network,
    flow: Flow,
    direction: str,
    group: Ref,
    group_name: str,
    label: str,
    covers: Callable[[Rule], bool],
) -> list[Finding]:
    """A finding on ``group`` if no rule of it in ``direction`` lets the flow through."""
    if _allowed(network, flow, direction, group, covers):
        return []
    return [
        Finding(
            group[1],
            f"{label} ({flow.reason}) is not allowed by the {direction} of {group_name}",
        )
    ]


def _flow_findings(network: Network, flow: Flow) -> list[Finding]:
    label = f"{', '.join(flow.clients)} -> {flow.destination_label} tcp/{flow.port}"
    source = network.groups.get(flow.source)
    if source is None:
        return [
            Finding("network-flows", f"security group {flow.source.value} of {label} is missing")
        ]
    findings = _unless_allowed(
        network,
        flow,
        "egress",
        source,
        flow.source.value,
        label,
        lambda r: network.egress_covers(r, flow.destination),
    )
    if isinstance(flow.destination, Group):
        return findings + _group_findings(network, flow, flow.destination, label)
    return findings + _gateway_findings(network, flow, label)


def _group_findings(network: Network, flow: Flow, group: Group, label: str) -> list[Finding]:
    """A flow to a security group: its ingress, a server that carries it, its endpoint."""
    synthesis = network.synthesis
    destination = network.groups.get(group)
    if destination is None:
        return [Finding("network-flows", f"security group {group.value} is missing")]
    findings = _unless_allowed(
        network,
        flow,
        "ingress",
        destination,
        group.value,
        label,
        lambda r: network.ingress_covers(r, flow.source),
    )
    server_type = SERVERS.get(group)
    if server_type and destination not in _server_groups(synthesis).get(server_type, set()):
        findings.append(
            Finding(
                destination[1],
                f"no {server_type} carries {group.value}, so {label} reaches nothing",
            )
        )
    if flow.service and not any(
        service == flow.service and destination in groups and private_dns
        for _, service, groups, private_dns in _interface_endpoints(synthesis)
    ):
        findings.append(
            Finding(
                destination[1],
                f"no interface endpoint for {flow.service} with private DNS "
                f"in {group.value}, needed by {label}",
            )
        )
    return findings


def _gateway_findings(network: Network, flow: Flow, label: str) -> list[Finding]:
    """A flow through the S3 gateway endpoint: every client subnet routes through it."""
    synthesis = network.synthesis
    gateways = _s3_gateways(synthesis)
    if not gateways:
        return [Finding("network-flows", f"no S3 gateway endpoint, needed by {label}")]
    endpoint = gateways[0][0]
    associated = set().union(*(tables_ for _, tables_ in gateways))
    tables = _route_tables(synthesis)
    findings = []
    for function in network.functions:
        if function.name not in flow.clients:
            continue
        if not function.subnets:
            findings.append(
                Finding(
                    function.where,
                    f"the subnets of {function.name} cannot be resolved, so "
                    f"its route for {label} cannot be proved",
                )
            )
        for subnet in sorted(function.subnets):
            subnet_tables = tables.get(subnet, set())
            if not subnet_tables or not subnet_tables <= associated:
                findings.append(
                    Finding(
                        endpoint[1],
                        f"the route table of subnet {subnet[1]} is not associated with the S3 "
                        f"gateway endpoint, so {function.name} has no route for {label}",
                    )
                )
    return findings


def _rule_findings(network: Network, flows: tuple[Flow, ...]) -> list[Finding]:
    by_ref = {ref: group for group, ref in network.groups.items()}
    findings = []
    for rule in network.rules:
        group = by_ref.get(rule.group)
        if rule.direction == "egress":
            needed = any(
                flow.source is group
                and rule.is_port(flow.port)
                and network.egress_covers(rule, flow.destination)
                for flow in flows
            )
        else:
            needed = any(
                flow.destination is group
                and rule.is_port(flow.port)
                and network.ingress_covers(rule, flow.source)
                for flow in flows
            )
        if not needed:
            side = "to" if rule.direction == "egress" else "from"
            findings.append(
                Finding(
                    rule.where,
                    f"{rule.direction} of "
                    f"{network.group_names.get(rule.group, rule.group[1])} "
                    f"{side} {_peer_label(network, rule)} ({_ports(rule)}) is allowed but no "
                    f"declared flow needs it (declare it in {DECLARATION} or remove the rule)",
                )
            )
    return findings


def _route_findings(network: Network) -> list[Finding]:
    """A CIDR egress beyond the VPC stands for the gateway endpoint only while the subnets of
    its functions route nowhere else (no route to an internet, NAT or transit gateway)."""
    synthesis = network.synthesis
    wide = {
        r.group
        for r in network.rules
        if r.direction == "egress" and r.peer_kind == "cidr" and network.leaves_vpc(str(r.peer))
    }
    tables = _route_tables(synthesis)
    exposed: dict[Ref, str] = {}
    for function in network.functions:
        if function.groups & wide:
            for subnet in function.subnets:
                for table in tables.get(subnet, set()):
                    exposed.setdefault(table, function.name)
    findings = []
    for ref, props in synthesis.resources("AWS::EC2::Route"):
        route_table = synthesis.resolve(ref[0], props.get("RouteTableId"))
        if isinstance(route_table, tuple) and route_table in exposed:
            findings.append(
                Finding(
                    ref[1],
                    f"route in a route table of {exposed[route_table]}, whose security group "
                    "allows HTTPS to any address: the function would reach beyond the VPC "
                    "endpoints",
                )
            )
    return findings


def _membership_findings(network: Network, flows: tuple[Flow, ...]) -> list[Finding]:
    declared = client_groups(flows)
    findings = []
    for function in network.functions:
        group = declared.get(function.name)
        if group is None:
            findings.append(
                Finding(
                    function.where,
                    f"in-VPC function {function.name} has no declared flows ({DECLARATION})",
                )
            )
            continue
        expected = network.groups.get(group)
        if function.groups != {expected}:
            names = sorted(network.group_names.get(g, g[1]) for g in function.groups)
            findings.append(
                Finding(
                    function.where,
                    f"{function.name} runs in {', '.join(names) or 'no group'}, "
                    f"declared in {group.value} only",
                )
            )
    present = {function.name for function in network.functions}
    findings.extend(
        Finding(
            "network-flows", f"declared client {client} is not an in-VPC function of this synthesis"
        )
        for client in sorted(set(declared) - present)
    )
    return findings


def _least_privilege_findings(network: Network, flows: tuple[Flow, ...]) -> list[Finding]:
    """Every function needs everything its group reaches: a group's rules hold for every
    function in it, so a destination that one member needs and another does not calls for a
    group of its own."""
    by_ref = {ref: group for group, ref in network.groups.items()}
    findings = []
    for function in network.functions:
        needs = {(f.destination, f.port) for f in flows if function.name in f.clients}
        if function.name not in {c for f in flows for c in f.clients}:
            continue  # reported as undeclared
        for group_ref in sorted(function.groups):
            group = by_ref.get(group_ref)
            for destination, port in sorted(_reached(network, group_ref)):
                if (destination, port) not in needs:
                    label = "the S3 gateway endpoint" if destination is Gateway.S3 else destination
                    findings.append(
                        Finding(
                            function.where,
                            f"{function.name} runs in "
                            f"{group.value if group else group_ref[1]}, which reaches {label} "
                            f"on tcp/{port}, and no declared flow of {function.name} needs it "
                            "(give it a group of its own)",
                        )
                    )
    return findings


def _reached(network: Network, group_ref: Ref) -> set[tuple[Group | Gateway, int]]:
    """(destination, port) that the egress of a group reaches: S3 by route, another group when
    its ingress admits this one too."""
    by_ref = {ref: group for group, ref in network.groups.items()}
    source = by_ref.get(group_ref)
    reached: set[tuple[Group | Gateway, int]] = set()
    for rule in network.rules:
        if rule.direction != "egress" or rule.group != group_ref or rule.from_port is None:
            continue
        if rule.from_port != rule.to_port or rule.protocol not in ("tcp", "6"):
            continue  # wider rules are reported as undeclared
        port = rule.from_port
        if network.egress_covers(rule, Gateway.S3):
            reached.add((Gateway.S3, port))
        for destination in Group:
            if destination is source or not network.egress_covers(rule, destination):
                continue
            if source is not None and any(
                r.direction == "ingress"
                and r.group == network.groups.get(destination)
                and r.is_port(port)
                and network.ingress_covers(r, source)
                for r in network.rules
            ):
                reached.add((destination, port))
    return reached


def _responder_findings(network: Network, flows: tuple[Flow, ...]) -> list[Finding]:
    """A custom resource whose service token is a function in the VPC (govdr's: the Provider
    framework in front of its handler) is answered only if that function has a declared flow to
    the S3 gateway endpoint: the response is an HTTPS PUT to a pre-signed S3 URL
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html).
    Functions outside a VPC reach S3 over Lambda's own network."""
    synthesis = network.synthesis
    in_vpc = {(f.template, f.where): f.name for f in network.functions}
    to_s3 = {client for flow in flows if flow.destination is Gateway.S3 for client in flow.clients}
    findings = []
    for tname, template in synthesis.templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            rtype = str(resource.get("Type", ""))
            if not is_custom_resource(rtype):
                continue
            props = resource.get("Properties", {})
            handler = synthesis.resolve(tname, props.get("ServiceToken"))
            if not isinstance(handler, tuple):
                continue
            function_name = in_vpc.get(handler)
            if function_name is not None and function_name not in to_s3:
                findings.append(
                    Finding(
                        logical_id,
                        f"the function CloudFormation sends it to, {function_name}, runs in "
                        "the VPC but has no declared flow to the S3 gateway endpoint, so it "
                        "cannot answer CloudFormation",
                    )
                )
    return findings


def network_flow_findings(
    templates: dict[str, Template], suffix: str, flows: tuple[Flow, ...] = FLOWS
) -> list[Finding]:
    """Each declared flow allowed on both ends (and routed, for the gateway endpoint), each
    rule needed by a declared flow, each in-VPC function in its declared group."""
    network = Network(Synthesis(templates), suffix)
    findings = list(network.findings)
    for flow in flows:
        findings.extend(_flow_findings(network, flow))
    findings.extend(_rule_findings(network, flows))
    findings.extend(_route_findings(network))
    findings.extend(_membership_findings(network, flows))
    findings.extend(_responder_findings(network, flows))
    findings.extend(_least_privilege_findings(network, flows))
    return findings
