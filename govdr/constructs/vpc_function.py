"""A govdr Lambda function: in the VPC, its own encrypted log group, a least-privilege role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs_
from constructs import Construct

from govdr.constructs import scanner_notes
from govdr.constructs.log_group import LogSettings, encrypted_log_group
from govdr.constructs.nag_notes import accept_findings
from govdr.constructs.policy_notes import WILDCARD_RESOURCE_SIDS
from govdr.constructs.python_bundle import ARCHITECTURE, RUNTIME
from govdr.constructs.scanner_notes import accept_check
from govdr.constructs.service_role import ServiceRole
from govdr.naming import name


def network_interface_statement() -> iam.PolicyStatement:
    """What every function in a VPC needs: Lambda manages its network interfaces, and these EC2
    actions take no resource ARN
    (https://docs.aws.amazon.com/lambda/latest/dg/configuring-vpc.html#configuring-vpc-permissions)."""
    return iam.PolicyStatement(
        sid="VpcNetworkInterfaces",
        actions=[
            "ec2:CreateNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        ],
        resources=["*"],
    )


def accept_listed_wildcards(policy: iam.ManagedPolicy) -> None:
    """Accept, on a function role's policy, the Resource '*' of the statements listed in
    WILDCARD_RESOURCE_SIDS (checkov CKV_AWS_111, cdk-nag IAM5), each with its reason."""
    accept_check(
        policy,
        "CKV_AWS_111",
        "write actions on Resource '*' only in VpcNetworkInterfaces (EC2 network-interface "
        "actions that take no resource ARN) and the statements listed with their reasons in "
        "WILDCARD_RESOURCE_SIDS (gate rule iam-wildcards)",
    )
    accept_findings(
        policy,
        ["AwsSolutions-IAM5[Resource::*]"],
        "only the statements listed in WILDCARD_RESOURCE_SIDS: "
        + "; ".join(f"{sid}: {why}" for sid, why in WILDCARD_RESOURCE_SIDS.items()),
    )


def function_identity(
    scope: Construct,
    *,
    function_type: str,
    environment_suffix: str,
    description: str,
    logs: LogSettings,
    statements: Sequence[iam.PolicyStatement],
) -> tuple[logs_.LogGroup, ServiceRole]:
    """A function's own log group (``LogGroup``, created first so Lambda never creates an
    unencrypted one) and its role (``Role``): ``statements`` plus managing its network
    interfaces and writing to that log group, the wildcards accepted with their reasons."""
    function_name = name(function_type, environment_suffix)
    log_group = encrypted_log_group(
        scope, "LogGroup", log_group_name=f"/aws/lambda/{function_name}", settings=logs
    )
    role = ServiceRole(
        scope,
        "Role",
        role_name=name(f"{function_type}-role", environment_suffix),
        policy_name=name(f"{function_type}-policy", environment_suffix),
        description=description,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        statements=[
            *statements,
            network_interface_statement(),
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            ),
        ],
    )
    accept_listed_wildcards(role.policy)
    return log_group, role


class VpcFunction(Construct):
    """Python function on arm64 in isolated subnets.

    The role holds ``statements`` plus the two every VPC function needs: managing its network
    interfaces (no resource-level permissions exist for those EC2 actions) and writing to its
    own log group, which is created first so Lambda never creates an unencrypted one.

    No concurrency is reserved (scanner_notes.NO_RESERVED_CONCURRENCY says why, with the
    documentation); the template check ``lambda-concurrency`` keeps it so.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        environment_suffix: str,
        function_type: str,
        description: str,
        code: lambda_.Code,
        handler: str,
        statements: Sequence[iam.PolicyStatement],
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        logs: LogSettings,
        timeout: Duration,
        memory_size: int = 256,
        environment: Mapping[str, str] | None = None,
        filesystem: lambda_.FileSystem | None = None,
    ) -> None:
        super().__init__(scope, id_)
        suffix = environment_suffix
        self.function_type = function_type
        self.environment_suffix = suffix
        self.function_name = name(function_type, suffix)
        self.logs = logs
        self.log_group, self.role = function_identity(
            self,
            function_type=function_type,
            environment_suffix=suffix,
            description=description,
            logs=logs,
            statements=statements,
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=self.function_name,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=code,
            timeout=timeout,
            memory_size=memory_size,
            role=self.role.immutable,
            log_group=self.log_group,
            environment=dict(environment or {}),
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[security_group],
            filesystem=filesystem,
        )
        accept_check(self.function, "CKV_AWS_115", scanner_notes.NO_RESERVED_CONCURRENCY)
        accept_check(self.function, "CKV_AWS_173", scanner_notes.ENVIRONMENT_HOLDS_NO_SECRETS)
        accept_findings(
            self.function,
            ["NIST.800.53.R5-LambdaConcurrency", "HIPAA.Security-LambdaConcurrency"],
            f"{scanner_notes.NO_RESERVED_CONCURRENCY}. A one-minute schedule, a "
            "custom-resource event or a rotation step invokes it; the archiver stays single "
            "because its logical slot admits one reader",
        )

    def without_dead_letter_queue(self, reason: str) -> None:
        """Say why a failed invocation needs no dead-letter queue (checkov CKV_AWS_116 and the
        packs' LambdaDLQ rules): a dead-letter queue keeps the events of failed asynchronous
        invocations
        (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)."""
        accept_check(self.function, "CKV_AWS_116", reason)
        accept_findings(
            self.function, ["NIST.800.53.R5-LambdaDLQ", "HIPAA.Security-LambdaDLQ"], reason
        )

    def run_every_minute(self, description: str) -> events.Rule:
        """Invoke the function every minute, with no retries: a failed or overlapping tick is
        dropped, the next comes anyway (overlapping archiver runs meet at the slot). The
        caller says why it needs no dead-letter queue (:meth:`without_dead_letter_queue`)."""
        lambda_.EventInvokeConfig(
            self,
            "InvokeConfig",
            function=self.function,
            retry_attempts=0,
            max_event_age=Duration.seconds(60),
        )
        return events.Rule(
            self,
            "Schedule",
            rule_name=name(f"{self.function_type}-schedule", self.environment_suffix),
            description=description,
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
