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
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from runtime.cfn_response import CfnRequest, send_response

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

ACTIVE_JOB_STATES = ("CREATED", "PENDING", "RUNNING")
POLL_SECONDS = 10
# Leave time to send the response after the last poll.
SAFETY_MARGIN_MS = 30_000


class VaultNotEmptyError(RuntimeError):
    """The vault still held recovery points when the time budget ran out."""


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


def handle(
    event: dict[str, Any],
    client: Any,
    remaining_ms: Callable[[], int],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    request = CfnRequest.parse(event, "empty-on-delete")
    vault_name = request.properties.get("BackupVaultName")
    if not vault_name:
        send_response(request, "FAILED", "ResourceProperties.BackupVaultName is required", {})
        return
    if request.physical_resource_id == "empty-on-delete":
        request = replace(request, physical_resource_id=f"empty-on-delete:{vault_name}")
    data: dict[str, Any] = {}
    try:
        if request.request_type == "Delete":
            data["DeletedRecoveryPoints"] = empty_vault(
                client, vault_name, remaining_ms=remaining_ms, sleep=sleep
            )
        status, reason = "SUCCESS", "ok"
    except Exception as exc:
        LOG.exception("emptying backup vault %s failed", vault_name)
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
    send_response(request, status, reason, data)


def handler(event: dict[str, Any], context: Any) -> None:  # pragma: no cover - Lambda entry
    import boto3

    client = boto3.client("backup", region_name=os.environ.get("AWS_REGION"))
    handle(event, client, remaining_ms=context.get_remaining_time_in_millis)
