"""A custom-resource handler's side of CDK's Provider framework.

CloudFormation sends each request to the framework's function (govdr/constructs/provider.py),
which invokes the handler with the request and answers CloudFormation itself: SUCCESS with
what the handler returns (:func:`success`), FAILED when the handler raises, with the
exception's message as the reason, and FAILED too when the handler crashes or runs out of time
(https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.custom_resources-readme.html#provider-framework).
A handler here never answers the response URL itself and needs no route to it.

The request is input like any other: :meth:`CfnRequest.parse` refuses one whose type or
properties are not what CloudFormation sends, in one line, before anything is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REQUEST_TYPES = ("Create", "Update", "Delete")
# The status of a stack that is being deleted. CloudFormation also sends Delete for the old
# resource after a replacement (a changed logical ID or an immutable property, the service
# token among them) and for a new one when an update rolls back, while the stack is
# UPDATE_COMPLETE_CLEANUP_IN_PROGRESS or UPDATE_ROLLBACK_(COMPLETE_CLEANUP_)IN_PROGRESS: a
# handler that removes data does so only while its stack is being deleted (or, for the
# bootstrap, while a first create rolls back: ROLLBACK_IN_PROGRESS).
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requesttypes-delete.html
DELETING_STACK_STATUS = "DELETE_IN_PROGRESS"
# CloudFormation's response (the reason included) must stay within 4 KB
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html):
# a reason is cut to this, leaving room for the framework's log-group line and the rest.
MAX_REASON_CHARS = 1000


class RequestFailed(Exception):
    """The request fails with this reason, and nothing was changed unless the reason says so.
    The framework sends it to CloudFormation, which shows it in the stack's events."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason[:MAX_REASON_CHARS])


@dataclass(frozen=True)
class CfnRequest:
    request_type: str
    properties: dict[str, Any]
    old_properties: dict[str, Any]
    physical_resource_id: str | None
    stack_id: str

    @classmethod
    def parse(cls, event: Any) -> CfnRequest:
        """The request, or RequestFailed naming what is wrong with it."""
        if not isinstance(event, Mapping):
            raise RequestFailed(
                "the request is not a JSON object; only CloudFormation (through the custom-"
                "resource framework) invokes this function, and nothing was changed"
            )
        request_type = event.get("RequestType")
        if request_type not in REQUEST_TYPES:
            raise RequestFailed(
                f"RequestType {request_type!r} is not one of {', '.join(REQUEST_TYPES)}; "
                "nothing was changed"
            )
        properties = _object(event, "ResourceProperties")
        old_properties = _object(event, "OldResourceProperties")
        physical = event.get("PhysicalResourceId")
        return cls(
            request_type=str(request_type),
            properties=properties,
            old_properties=old_properties,
            physical_resource_id=physical if isinstance(physical, str) and physical else None,
            stack_id=str(event.get("StackId") or ""),
        )


def _object(event: Mapping[str, Any], field: str) -> dict[str, Any]:
    value = event.get(field)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RequestFailed(
            f"{field} is not a JSON object (got {type(value).__name__}); nothing was changed"
        )
    return dict(value)


def stack_status(cloudformation: Any, stack_id: str) -> str:
    """The status of the stack that sent the request (DescribeStacks takes the stack ID:
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html)."""
    stacks = cloudformation.describe_stacks(StackName=stack_id).get("Stacks", [])
    return str(stacks[0]["StackStatus"]) if stacks else "NOT_FOUND"


def success(data: Mapping[str, Any], physical_resource_id: str | None = None) -> dict[str, Any]:
    """SUCCESS with ``data`` (the resource's attributes). Without ``physical_resource_id`` the
    framework keeps the request's own (its RequestId on Create), as it must on Delete; a new one
    on Update makes CloudFormation delete the old resource afterwards."""
    result: dict[str, Any] = {"Data": dict(data)}
    if physical_resource_id:
        result["PhysicalResourceId"] = physical_resource_id
    return result
