"""Network nested stack: VPC over three AZs, endpoints, and every security-group path.

All security groups and the rules between them live here, so the network paths of the
platform (FedRAMP SC-7) can be reviewed in one place and no rule points back across
nested stacks.
"""

from __future__ import annotations

import ipaddress

import jsii
from aws_cdk import Aspects, IAspect, NestedStack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct, IConstruct

from govdr.config import DrConfig
from govdr.constructs.log_group import encrypted_log_group
from govdr.constructs.scanner_notes import accept_cdk_provider_handler
from govdr.constructs.service_role import log_delivery_role
from govdr.naming import name
from govdr.network_flows import HTTPS_PORT, Flow, Gateway, Group, flows_for
from govdr.stacks.settings import log_settings

DATABASE_SUBNETS = "Database"
FUNCTION_SUBNETS = "Functions"

# Construct IDs (and so logical IDs) of the groups, and what each is for.
GROUP_IDS: dict[Group, str] = {
    Group.ENDPOINTS: "EndpointSecurityGroup",
    Group.DATABASE: "DatabaseSecurityGroup",
    Group.ROTATION: "RotationSecurityGroup",
    Group.TXLOG: "TxlogSecurityGroup",
    Group.BOOTSTRAP: "TxlogBootstrapSecurityGroup",
    Group.OPS: "OpsSecurityGroup",
    Group.MONITOR: "RpoMonitorSecurityGroup",
    Group.FILE_SYSTEM: "FileSystemSecurityGroup",
    Group.PROVIDER: "CfnProviderSecurityGroup",
}
GROUP_DESCRIPTIONS: dict[Group, str] = {
    Group.ENDPOINTS: "Interface VPC endpoints: HTTPS from inside the VPC only",
    Group.DATABASE: "RDS PostgreSQL: PostgreSQL port from rotation and transaction-log "
    "clients only",
    Group.ROTATION: "Secrets Manager rotation function: to the database and AWS API endpoints",
    Group.TXLOG: "Transaction-log clients: to the database, EFS and AWS API endpoints",
    Group.BOOTSTRAP: "Replication-user bootstrap (custom resource): to the database and AWS API "
    "endpoints",
    Group.OPS: "Operations functions (backup-vault cleanup): HTTPS to AWS APIs only",
    Group.MONITOR: "RPO monitor: HTTPS to the RDS API endpoint only",
    Group.FILE_SYSTEM: "EFS transaction-log store: NFS from transaction-log clients only",
    Group.PROVIDER: "Custom-resource framework: invokes its handler (Lambda endpoint) and answers "
    "CloudFormation (S3 gateway endpoint)",
}

INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "CloudWatchLogs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "CloudWatchMonitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "Rds": ec2.InterfaceVpcEndpointAwsService.RDS,
    "EventBridge": ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE,
    "Backup": ec2.InterfaceVpcEndpointAwsService.BACKUP,
    # The custom-resource framework invokes its handler through it (private DNS, so the SDK's
    # regional Lambda endpoint resolves to it:
    # https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc-endpoints.html).
    "Lambda": ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
}
# Built only when a declared flow of the synthesis goes to the service: the bootstrap and the
# vault cleaner read their stack's status (DescribeStacks)
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/vpc-interface-endpoints.html).
FLOW_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "CloudFormation": ec2.InterfaceVpcEndpointAwsService.CLOUDFORMATION,
}


def interface_endpoints(flows: tuple[Flow, ...]) -> dict[str, ec2.InterfaceVpcEndpointAwsService]:
    """The interface endpoints of one synthesis: the platform's, plus those its flows need."""
    services = {flow.service for flow in flows if flow.service}
    needed = {k: v for k, v in FLOW_ENDPOINTS.items() if v.short_name in services}
    return {**INTERFACE_ENDPOINTS, **needed}


def subnet_mask(vpc_cidr: str) -> int:
    """Mask that fits two subnet groups over three AZs (6 subnets) into the VPC, /28 at most."""
    prefix = ipaddress.IPv4Network(vpc_cidr).prefixlen
    return min(prefix + 3, 28)


class NetworkStack(NestedStack):
    """VPC without internet access; functions reach AWS APIs through VPC endpoints."""

    def __init__(self, scope: Construct, id_: str, *, config: DrConfig, logs_key: kms.IKey) -> None:
        super().__init__(scope, id_, description=f"govdr network ({config.environment_suffix})")
        suffix = config.environment_suffix
        mask = subnet_mask(config.vpc_cidr)

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            vpc_name=name("vpc", suffix),
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            availability_zones=list(config.availability_zones),
            nat_gateways=0,
            create_internet_gateway=False,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=DATABASE_SUBNETS,
                    subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                    cidr_mask=mask,
                ),
                ec2.SubnetConfiguration(
                    name=FUNCTION_SUBNETS,
                    subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                    cidr_mask=mask,
                ),
            ],
            restrict_default_security_group=True,
            enable_dns_hostnames=True,
            enable_dns_support=True,
        )
        accept_cdk_provider_handler(self, "Custom::VpcRestrictDefaultSGCustomResourceProvider")
        self.database_subnets = ec2.SubnetSelection(subnet_group_name=DATABASE_SUBNETS)
        self.function_subnets = ec2.SubnetSelection(subnet_group_name=FUNCTION_SUBNETS)

        self.groups = {
            group: self._sg(group, suffix, description)
            for group, description in GROUP_DESCRIPTIONS.items()
        }
        self.endpoint_sg = self.groups[Group.ENDPOINTS]
        self.database_sg = self.groups[Group.DATABASE]
        self.rotation_sg = self.groups[Group.ROTATION]
        self.txlog_sg = self.groups[Group.TXLOG]
        self.bootstrap_sg = self.groups[Group.BOOTSTRAP]
        self.ops_sg = self.groups[Group.OPS]
        self.monitor_sg = self.groups[Group.MONITOR]
        self.provider_sg = self.groups[Group.PROVIDER]
        self.efs_sg = self.groups[Group.FILE_SYSTEM]
        # A literal CIDR (not the VPC's CidrBlock token) keeps the rule reviewable and lets
        # rule packs evaluate it.
        self.endpoint_sg.add_ingress_rule(
            ec2.Peer.ipv4(config.vpc_cidr),
            ec2.Port.tcp(HTTPS_PORT),
            "HTTPS to AWS APIs from workloads in this VPC",
        )
        flows = flows_for(config.retain_data)
        self._rules_of(flows)
        # Other stacks add rules to these groups later (a function's file system, for one):
        # the placeholder is put back when the whole app has been built.
        Aspects.of(self).add(_DefaultEgressOff())

        for endpoint_id, service in interface_endpoints(flows).items():
            self.vpc.add_interface_endpoint(
                endpoint_id,
                service=service,
                subnets=self.function_subnets,
                security_groups=[self.endpoint_sg],
                open=False,
                private_dns_enabled=True,
            )
        self.vpc.add_gateway_endpoint(
            "S3Endpoint",
            service=ec2.GatewayVpcEndpointAwsService.S3,
            subnets=[self.database_subnets, self.function_subnets],
        )

        self._flow_logs(config, logs_key)

    def _flow_logs(self, config: DrConfig, logs_key: kms.IKey) -> None:
        """Flow logs of all traffic (AU-12), beside the VPC they record."""
        suffix = config.environment_suffix
        self.flow_log_group = encrypted_log_group(
            self,
            "FlowLogGroup",
            log_group_name=name("vpc-flow-logs", suffix),
            settings=log_settings(config, logs_key),
        )
        role = log_delivery_role(
            self,
            "FlowLogRole",
            role_name=name("vpc-flow-logs-role", suffix),
            policy_name=name("vpc-flow-logs-policy", suffix),
            service="vpc-flow-logs.amazonaws.com",
            log_group_arn=self.flow_log_group.log_group_arn,
            description="VPC flow logs deliver records to their one log group",
            extra_actions=["logs:DescribeLogStreams"],
        )
        self.flow_log = ec2.FlowLog(
            self,
            "FlowLog",
            flow_log_name=name("vpc-flow-log", suffix),
            resource_type=ec2.FlowLogResourceType.from_vpc(self.vpc),
            traffic_type=ec2.FlowLogTrafficType.ALL,
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                self.flow_log_group, role.immutable
            ),
        )

    def _rules_of(self, flows: tuple[Flow, ...]) -> None:
        """The egress (and, towards a group, the ingress) rules each declared flow needs.

        S3 is reached through the gateway endpoint, which has no security group, and its
        prefix-list ID cannot be read inside a template: HTTPS to any IPv4 address stands for
        it. The subnets are isolated (no internet or NAT gateway), so their route tables send
        such traffic only to the VPC and the gateway endpoint; the gate rule network-flows
        fails the synth if a route table of these subnets ever gets another route
        (https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-s3.html).
        """
        done: set[tuple[Group, str, int]] = set()
        for flow in flows:
            client = self.groups[flow.source]
            key = (flow.source, flow.destination.value, flow.port)
            if key in done:
                continue
            done.add(key)
            if flow.destination is Gateway.S3:
                client.add_egress_rule(
                    ec2.Peer.any_ipv4(),
                    ec2.Port.tcp(flow.port),
                    "HTTPS to the S3 gateway endpoint (isolated subnets, no internet route)",
                )
                continue
            assert isinstance(flow.destination, Group)
            server = self.groups[flow.destination]
            if flow.destination is Group.ENDPOINTS:
                # The endpoints admit the whole VPC CIDR (above); egress is per client.
                client.add_egress_rule(
                    server,
                    ec2.Port.tcp(flow.port),
                    f"HTTPS from {flow.source.value} to AWS API endpoints",
                )
                continue
            description = f"{flow.source.value} to {flow.destination.value}: {flow.reason}"
            client.add_egress_rule(server, ec2.Port.tcp(flow.port), description)
            server.add_ingress_rule(client, ec2.Port.tcp(flow.port), description)

    def _sg(self, group: Group, suffix: str, description: str) -> ec2.SecurityGroup:
        sg_name = name(group.value, suffix)
        sg = ec2.SecurityGroup(
            self,
            GROUP_IDS[group],
            vpc=self.vpc,
            security_group_name=sg_name,
            description=description,
            allow_all_outbound=False,
        )
        Tags.of(sg).add("Name", sg_name)
        return sg


@jsii.implements(IAspect)
class _DefaultEgressOff:
    """Runs _keep_default_egress_off on every security group of the stack before synthesis."""

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, ec2.SecurityGroup):
            _keep_default_egress_off(node)


def _keep_default_egress_off(sg: ec2.SecurityGroup) -> None:
    """Give the group an inline egress rule that matches no traffic (CDK's own placeholder).

    EC2 adds an allow-all egress rule to a group created without inline egress rules, and a
    rule added later as a separate AWS::EC2::SecurityGroupEgress resource does not remove it
    ("When you create a security group, if you do not add egress rules, we add egress rules
    that allow all outbound IPv4 and IPv6 traffic. Otherwise, we do not add them."
    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-securitygroup.html).
    CDK drops its placeholder as soon as any egress rule is added, even one towards another
    group, which it writes as a separate resource; a group whose egress goes only to other
    groups would then keep EC2's allow-all rule. Added last (by an aspect), so that CDK does
    not drop it again; adding it drops an earlier copy, so each group has exactly one.
    """
    sg.add_egress_rule(
        ec2.Peer.ipv4("255.255.255.255/32"),
        ec2.Port.icmp_type_and_code(252, 86),
        "Disallow all traffic",
    )
