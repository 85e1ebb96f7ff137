"""CloudFormation custom resource that empties an AWS Backup vault when the stack is deleted.

A vault that still holds recovery points cannot be deleted, so without this a teardown fails
as soon as the first backup has run. On ``Delete`` the function stops the vault's running
backup jobs, deletes every recovery point and waits until the vault is empty, inside the
Lambda time budget. ``Create`` and ``Update`` do nothing.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

ACTIVE_JOB_STATES = ("CREATED", "PENDING", "RUNNING")
POLL_SECONDS = 10
# Leave time to send the response after the last poll.
SAFETY_MARGIN_MS = 30_000


class VaultNotEmptyError(RuntimeError):
    """The vault still held recovery points when the time budget ran out."""


@dataclass(frozen=True)
class Request:
    request_type: str
    vault_name: str
    response_url: str
    stack_id: str
    request_id: str
    logical_resource_id: str
    physical_resource_id: str

    @classmethod
    def parse(cls, event: dict[str, Any]) -> Request:
        props = event.get("ResourceProperties", {})
        vault = props.get("BackupVaultName")
        if not vault:
            raise ValueError("ResourceProperties.BackupVaultName is required")
        return cls(
            request_type=event["RequestType"],
            vault_name=vault,
            response_url=event["ResponseURL"],
            stack_id=event["StackId"],
            request_id=event["RequestId"],
            logical_resource_id=event["LogicalResourceId"],
            physical_resource_id=event.get("PhysicalResourceId") or f"empty-on-delete:{vault}",
        )


def _is_missing_vault(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code == "ResourceNotFoundException"


def stop_active_jobs(client: Any, vault_name: str) -> int:
    """Stop backup jobs that would write new recovery points into the vault."""
    stopped = 0
    for state in ACTIVE_JOB_STATES:
        paginator = client.get_paginator("list_backup_jobs")
        for page in paginator.paginate(ByBackupVaultName=vault_name, ByState=state):
            for job in page.get("BackupJobs", []):
                client.stop_backup_job(BackupJobId=job["BackupJobId"])
                stopped += 1
    return stopped


def delete_recovery_points(client: Any, vault_name: str) -> tuple[int, int]:
    """Request deletion of every recovery point; return (deleted now, still present)."""
    deleted = remaining = 0
    paginator = client.get_paginator("list_recovery_points_by_backup_vault")
    for page in paginator.paginate(BackupVaultName=vault_name):
        for point in page.get("RecoveryPoints", []):
            remaining += 1
            if point.get("Status") == "DELETING":
                continue
            client.delete_recovery_point(
                BackupVaultName=vault_name, RecoveryPointArn=point["RecoveryPointArn"]
            )
            deleted += 1
    return deleted, remaining


def empty_vault(
    client: Any,
    vault_name: str,
    *,
    remaining_ms: Callable[[], int],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Empty the vault; return how many recovery points were deleted.

    A vault that no longer exists counts as empty, so a repeated delete succeeds.
    """
    total = 0
    try:
        stopped = stop_active_jobs(client, vault_name)
        if stopped:
            LOG.info(json.dumps({"vault": vault_name, "stopped_jobs": stopped}))
        while True:
            deleted, remaining = delete_recovery_points(client, vault_name)
            total += deleted
            LOG.info(json.dumps({"vault": vault_name, "deleted": deleted, "remaining": remaining}))
            if remaining == 0:
                return total
            if remaining_ms() < SAFETY_MARGIN_MS + POLL_SECONDS * 1000:
                raise VaultNotEmptyError(
                    f"backup vault {vault_name} still holds {remaining} recovery points; "
                    "delete them (AWS Backup console or delete-recovery-point) and retry the "
                    "stack deletion"
                )
            sleep(POLL_SECONDS)
    except VaultNotEmptyError:
        raise
    except Exception as exc:
        if _is_missing_vault(exc):
            LOG.info(json.dumps({"vault": vault_name, "missing": True}))
            return total
        raise


def send_response(request: Request, status: str, reason: str, data: dict[str, Any]) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000],
            "PhysicalResourceId": request.physical_resource_id,
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


def handle(
    event: dict[str, Any],
    client: Any,
    remaining_ms: Callable[[], int],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    try:
        request = Request.parse(event)
    except (KeyError, ValueError) as exc:
        # Answer anyway, or CloudFormation waits an hour for a response that never comes.
        fallback = Request(
            request_type=str(event.get("RequestType", "")),
            vault_name="",
            response_url=event["ResponseURL"],
            stack_id=str(event.get("StackId", "")),
            request_id=str(event.get("RequestId", "")),
            logical_resource_id=str(event.get("LogicalResourceId", "")),
            physical_resource_id=str(event.get("PhysicalResourceId") or "invalid-request"),
        )
        send_response(fallback, "FAILED", f"invalid request: {exc}", {})
        return
    data: dict[str, Any] = {}
    try:
        if request.request_type == "Delete":
            data["DeletedRecoveryPoints"] = empty_vault(
                client, request.vault_name, remaining_ms=remaining_ms, sleep=sleep
            )
        status, reason = "SUCCESS", "ok"
    except Exception as exc:
        LOG.exception("emptying backup vault %s failed", request.vault_name)
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
    send_response(request, status, reason, data)


def handler(event: dict[str, Any], context: Any) -> None:  # pragma: no cover - Lambda entry
    import boto3

    client = boto3.client("backup", region_name=os.environ.get("AWS_REGION"))
    handle(event, client, remaining_ms=context.get_remaining_time_in_millis)
