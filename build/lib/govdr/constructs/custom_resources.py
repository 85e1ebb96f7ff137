"""A service timeout on every custom resource, so that a handler that never answers fails fast.

Without ``ServiceTimeout`` CloudFormation waits an hour for a custom resource's response
before it fails the operation, then as long again for the rollback's delete
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudformation-customresource.html:
1 to 3600 seconds, default 3600). The timeout must not cut a handler that answers within its
own Lambda timeout, so it is at least that; the gate rule ``custom-resource-timeout`` keeps
both bounds.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import CfnResource, CustomResource
from constructs import IConstruct

# Time for the response PUT and CloudFormation's processing after the handler returns.
RESPONSE_MARGIN_SECONDS = 60
# The ceiling the gate allows: the longest Lambda timeout (15 minutes) and the margin, not an
# hour; a handler that may run its full 15 minutes still has time to answer.
MAX_SERVICE_TIMEOUT_SECONDS = 900 + RESPONSE_MARGIN_SECONDS
# CDK's own custom-resource providers (S3 auto-delete, default security group) run with
# CustomResourceProvider's default Lambda timeout of 15 minutes.
CDK_PROVIDER_TIMEOUT_SECONDS = 900
CUSTOM_RESOURCE_TYPE = "AWS::CloudFormation::CustomResource"


def service_timeout(function_timeout_seconds: int) -> int:
    """The service timeout of a custom resource whose handler has the given Lambda timeout."""
    return min(function_timeout_seconds + RESPONSE_MARGIN_SECONDS, MAX_SERVICE_TIMEOUT_SECONDS)


def is_custom_resource(resource_type: str) -> bool:
    return resource_type == CUSTOM_RESOURCE_TYPE or resource_type.startswith("Custom::")


def bound_custom_resources(scope: IConstruct, own: Iterable[CustomResource]) -> int:
    """Give every custom resource under ``scope`` that is not one of ``own`` (which set their
    service timeout from their handler's) the timeout of CDK's provider handlers; return how
    many were bounded."""
    own_paths = {resource.node.path for resource in own}
    bounded = 0
    for construct in scope.node.find_all():
        if not isinstance(construct, CfnResource):
            continue
        if not is_custom_resource(construct.cfn_resource_type):
            continue
        parent = construct.node.scope
        if parent is not None and parent.node.path in own_paths:
            continue
        # A string, the property's documented type (CDK's own CustomResource writes one too).
        construct.add_property_override(
            "ServiceTimeout", str(service_timeout(CDK_PROVIDER_TIMEOUT_SECONDS))
        )
        bounded += 1
    return bounded
