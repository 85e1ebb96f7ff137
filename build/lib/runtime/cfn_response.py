"""CloudFormation custom-resource protocol: parse the request, answer on the pre-signed URL.

Shared by govdr's custom-resource functions. Every request gets an answer, even an invalid
one, or CloudFormation waits an hour for a response that never comes.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CfnRequest:
    request_type: str
    properties: dict[str, Any]
    response_url: str
    stack_id: str
    request_id: str
    logical_resource_id: str
    physical_resource_id: str

    @classmethod
    def parse(cls, event: dict[str, Any], default_physical_id: str) -> CfnRequest:
        """The request; ``ResponseURL`` is the one field without which nobody can be told."""
        return cls(
            request_type=str(event.get("RequestType", "")),
            properties=dict(event.get("ResourceProperties") or {}),
            response_url=event["ResponseURL"],
            stack_id=str(event.get("StackId", "")),
            request_id=str(event.get("RequestId", "")),
            logical_resource_id=str(event.get("LogicalResourceId", "")),
            physical_resource_id=str(event.get("PhysicalResourceId") or default_physical_id),
        )


def send_response(
    request: CfnRequest,
    status: str,
    reason: str,
    data: dict[str, Any],
    physical_resource_id: str | None = None,
) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000],
            "PhysicalResourceId": physical_resource_id or request.physical_resource_id,
            "StackId": request.stack_id,
            "RequestId": request.request_id,
            "LogicalResourceId": request.logical_resource_id,
            "Data": data,
        }
    ).encode()
    put = urllib.request.Request(  # noqa: S310 - the URL is CloudFormation's pre-signed S3 URL
        request.response_url,
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(put, timeout=30) as response:  # noqa: S310
        response.read()
