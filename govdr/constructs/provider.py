"""CDK's custom-resource Provider framework in front of a govdr handler function.

CloudFormation sends a custom resource's request to the framework's function, which invokes
the handler synchronously and answers CloudFormation itself: SUCCESS with what the handler
returns (``PhysicalResourceId``, ``Data``), FAILED with the message of whatever the handler
raised, and FAILED too when the handler crashes or times out, so that no request goes
unanswered
(https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.custom_resources-readme.html#provider-framework,
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html).
The framework passes the request on with its pre-signed response URL, but the handler never
uses it (nor logs the event) and needs no route to S3.

The framework's function is built like every govdr function: in the isolated subnets with its
own security group (it reaches Lambda through the interface endpoint and the pre-signed S3
response URL through the gateway endpoint; govdr/network_flows.py), its own encrypted log
group, and a role that may only invoke its one handler, describe it, manage its network
interfaces and write its logs.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from constructs import Construct

from govdr.constructs import scanner_notes
from govdr.constructs.nag_notes import accept_findings
from govdr.constructs.scanner_notes import CUSTOM_RESOURCE_OUTCOME, accept_check
from govdr.constructs.vpc_function import VpcFunction, function_identity
from govdr.naming import name

# The framework's function as CDK builds it (aws-cdk-lib custom-resources provider.js):
# framework-onEvent, a Node.js function with a fixed 15-minute timeout.
FRAMEWORK_FUNCTION_ID = "framework-onEvent"
# Its environment names the handler (aws-cdk-lib custom-resources runtime/consts.js).
USER_HANDLER_ENV = "USER_ON_EVENT_FUNCTION_ARN"


def provider_function_type(handler_type: str) -> str:
    """The function type (name before the suffix) of the framework in front of a handler."""
    return f"{handler_type}-provider"


class HandlerProvider(Construct):
    """The Provider framework for one handler; ``service_token`` is what a CustomResource
    names."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        handler: VpcFunction,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, id_)
        suffix = handler.environment_suffix
        function_type = provider_function_type(handler.function_type)
        self.function_name = name(function_type, suffix)
        description = (
            f"CDK's custom-resource framework: answers CloudFormation for {handler.function_name}"
        )
        self.log_group, self.role = function_identity(
            self,
            function_type=function_type,
            environment_suffix=suffix,
            description=description,
            logs=handler.logs,
            statements=[
                # The framework invokes the handler and, before that, waits for it to be
                # active (lambda:GetFunction); Provider grants exactly these two
                # (aws-cdk-lib custom-resources provider.js, addPermissions).
                iam.PolicyStatement(
                    sid="InvokeItsHandler",
                    actions=["lambda:InvokeFunction", "lambda:GetFunction"],
                    resources=[handler.function.function_arn],
                ),
            ],
        )
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=handler.function,
            provider_function_name=self.function_name,
            framework_on_event_role=self.role.immutable,
            # INFO: each request and the answer sent (the response URL redacted) are logged.
            framework_lambda_logging_level=lambda_.ApplicationLogLevel.INFO,
            log_group=self.log_group,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[security_group],
        )
        self.service_token = self.provider.service_token
        framework = self.provider.node.find_child(FRAMEWORK_FUNCTION_ID)
        assert isinstance(framework, lambda_.Function)
        self.function = framework
        accept_check(framework, "CKV_AWS_115", scanner_notes.NO_RESERVED_CONCURRENCY)
        accept_check(framework, "CKV_AWS_116", CUSTOM_RESOURCE_OUTCOME)
        accept_check(
            framework,
            "CKV_AWS_173",
            "the environment holds the handler's function ARN only, which Lambda encrypts at "
            "rest with its AWS managed key",
        )
        accept_findings(
            framework,
            [
                "NIST.800.53.R5-LambdaConcurrency",
                "HIPAA.Security-LambdaConcurrency",
                "NIST.800.53.R5-LambdaDLQ",
                "HIPAA.Security-LambdaDLQ",
            ],
            f"{scanner_notes.NO_RESERVED_CONCURRENCY}; and {CUSTOM_RESOURCE_OUTCOME}",
        )
