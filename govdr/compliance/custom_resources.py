"""Gate rule ``custom-resource-timeout``: every custom resource fails fast when unanswered.

CloudFormation waits ``ServiceTimeout`` seconds for a custom resource's response, an hour when
the property is absent
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudformation-customresource.html).
The timeout must be at least the handler's Lambda timeout (or a handler that answers in time
is cut off) and at most :data:`MAX_SERVICE_TIMEOUT_SECONDS`. Behind CDK's Provider framework
the handler is the function the framework invokes (its environment names it,
govdr.constructs.provider.USER_HANDLER_ENV): the framework answers as soon as that invocation
returns, whatever its own 15-minute timeout.
"""

from __future__ import annotations

from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.templates import Template
from govdr.constructs.custom_resources import MAX_SERVICE_TIMEOUT_SECONDS, is_custom_resource
from govdr.constructs.provider import USER_HANDLER_ENV

RULE = "custom-resource-timeout"
FIX = (
    "give the custom resource service_timeout=Duration.seconds(service_timeout(<handler "
    "timeout>)) from govdr.constructs.custom_resources (at most 960 s, at least the "
    "handler's Lambda timeout)"
)


# Lambda's default timeout when a function sets none
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html).
LAMBDA_DEFAULT_TIMEOUT_SECONDS = 3


def _seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _function(template: Template, arn: Any) -> tuple[str, dict[str, Any]] | None:
    """(logical ID, properties) of the function of this template that ``arn`` (a GetAtt) names."""
    if not (isinstance(arn, dict) and "Fn::GetAtt" in arn):
        return None
    target = arn["Fn::GetAtt"]
    logical_id = target[0] if isinstance(target, list) and target else None
    resource = template.get("Resources", {}).get(logical_id)
    if not isinstance(resource, dict) or resource.get("Type") != "AWS::Lambda::Function":
        return None
    props = resource.get("Properties", {})
    return str(logical_id), props if isinstance(props, dict) else {}


def _handler_timeout(template: Template, service_token: Any) -> tuple[str, int] | None:
    """(logical ID, Lambda timeout) of the handler function of this template, if it is one:
    the function the service token names or, when that is the Provider framework, the one the
    framework invokes."""
    found = _function(template, service_token)
    if found is None:
        return None
    variables = found[1].get("Environment", {}).get("Variables", {})
    behind = _function(template, variables.get(USER_HANDLER_ENV)) if variables else None
    logical_id, props = behind or found
    timeout = _seconds(props.get("Timeout"))
    return logical_id, LAMBDA_DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout


def custom_resource_timeout_findings(template: Template) -> list[Finding]:
    """Every custom resource sets ServiceTimeout, at most the ceiling and at least the
    Lambda timeout of its handler (when the handler is a function of the same template)."""
    findings: list[Finding] = []
    for logical_id, resource in template.get("Resources", {}).items():
        if not is_custom_resource(str(resource.get("Type", ""))):
            continue
        props = resource.get("Properties", {})
        raw = props.get("ServiceTimeout")
        if raw is None:
            findings.append(
                Finding(
                    logical_id,
                    "no ServiceTimeout, so CloudFormation waits an hour for an "
                    "answer that does not come",
                )
            )
            continue
        timeout = _seconds(raw)
        if timeout is None or not 1 <= timeout <= MAX_SERVICE_TIMEOUT_SECONDS:
            findings.append(
                Finding(
                    logical_id,
                    f"ServiceTimeout {raw!r} is not a whole number of seconds from 1 "
                    f"to {MAX_SERVICE_TIMEOUT_SECONDS}",
                )
            )
            continue
        handler = _handler_timeout(template, props.get("ServiceToken"))
        if handler is not None and timeout < handler[1]:
            findings.append(
                Finding(
                    logical_id,
                    f"ServiceTimeout {timeout} s is shorter than the {handler[1]} s "
                    f"Lambda timeout of its handler {handler[0]}",
                )
            )
    return findings
