"""Checkov checks accepted on a resource, recorded where the resource is built, with the reason.

checkov (the template scanner of ``make synth`` and the suite,
:mod:`govdr.compliance.checkov_scan`) reads accepted checks from the resource's CloudFormation
``Metadata`` (https://www.checkov.io/2.Basics/Suppressing%20and%20Skipping%20Policies.html:
``Metadata: {checkov: {skip: [{id, comment}]}}``; CloudFormation keeps metadata and ignores it:
https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-metadata.html).
The template itself then says which check is accepted and why, and removing the note brings the
failed check back.
"""

from __future__ import annotations

import re
from typing import Any

from aws_cdk import CfnResource
from constructs import IConstruct

METADATA_KEY = "checkov"
_CHECK_ID = re.compile(r"CKV2?_AWS_\d+")

# "You can reserve up to the Unreserved account concurrency value minus 100" and "New AWS
# accounts have reduced concurrency and memory quotas"
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html,
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html); with a quota of 10
# the API refuses any reservation ("below its minimum value of [10]").
NO_RESERVED_CONCURRENCY = (
    "no concurrency is reserved: Lambda leaves 100 executions of the account's quota "
    "unreserved, and a new account or opt-in region (eu-central-2 is one) may have a quota "
    "of 10, where any reservation fails the deploy (gate rule lambda-concurrency)"
)
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html
ENVIRONMENT_HOLDS_NO_SECRETS = (
    "the environment holds names and ARNs only (gate rule no-plaintext-secrets), which Lambda "
    "encrypts at rest with its AWS managed key; credentials come from Secrets Manager at run time"
)


def accept_check(construct: IConstruct, check_id: str, reason: str) -> None:
    """Accept checkov check ``check_id`` on the construct's CloudFormation resource."""
    if not _CHECK_ID.fullmatch(check_id):
        raise ValueError(f"{check_id!r} is not a checkov AWS check id (CKV_AWS_<n>)")
    if len(reason.strip()) < 20:
        raise ValueError(f"accepting {check_id} needs its reason (got {reason!r})")
    resource = construct.node.default_child if construct.node.default_child else construct
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to note on")
    current: dict[str, Any] = dict(resource.get_metadata(METADATA_KEY) or {})
    skips = [s for s in current.get("skip", []) if s["id"] != check_id]
    skips.append({"id": check_id, "comment": reason})
    current["skip"] = skips
    resource.add_metadata(METADATA_KEY, current)


# Custom resources:
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
CUSTOM_RESOURCE_OUTCOME = (
    "a custom resource: CloudFormation gets the outcome, FAILED with its reason, at the response "
    "URL, the stack event shows it and the handler logs it to its encrypted log group; a "
    "dead-letter queue would keep the event, whose "
    "pre-signed response URL must not outlive the request"
)
# https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda.html
ROTATION_OUTCOME = (
    "Secrets Manager calls the rotation function step by step, retries a failed rotation "
    "itself and records RotationFailed (CloudTrail), which the rotation-failure EventBridge "
    "rule sends to the alarms topic, while the secret keeps its AWSCURRENT version; a "
    "dead-letter queue would keep only the step request, which carries no data"
)


# https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.CustomResourceProvider.html
CDK_PROVIDER_HANDLER = {
    "CKV_AWS_115": NO_RESERVED_CONCURRENCY,
    "CKV_AWS_116": CUSTOM_RESOURCE_OUTCOME,
    "CKV_AWS_117": (
        "a CDK custom-resource provider handler (built by aws-cdk-lib, with no VPC option): it "
        "calls only S3 or EC2 APIs and must reach CloudFormation's pre-signed response URL on "
        "S3, which the platform's isolated subnets cannot"
    ),
}


def accept_cdk_provider_handler(stack: IConstruct, provider_id: str) -> bool:
    """Accept the checks CDK's own provider handler ``provider_id`` (a child of ``stack``)
    fails, if the stack has one; return whether it had."""
    provider = stack.node.try_find_child(provider_id)
    if provider is None:
        return False
    handler = provider.node.find_child("Handler")
    for check_id, reason in CDK_PROVIDER_HANDLER.items():
        accept_check(handler, check_id, reason)
    return True
