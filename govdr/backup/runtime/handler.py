"""CloudFormation custom resource that empties an AWS Backup vault when the stack is deleted.

A vault that still holds recovery points cannot be deleted, so without this a teardown fails
as soon as the first backup has run. On ``Delete`` the function stops the vault's running
backup jobs, deletes every recovery point and waits until the vault is empty, inside the
Lambda time budget. ``Create`` and ``Update`` do nothing.

It empties nothing unless all of these hold:

- the vault named in the event is the one the stack configured (``BACKUP_VAULT_NAME``);
- the stack that sent the event is itself being deleted: ``DescribeStacks`` on the event's
  ``StackId`` reports ``DELETE_IN_PROGRESS``. CloudFormation also sends ``Delete`` for the old
  physical ID after a replacement or a vault rename, while the stack is in
  ``UPDATE_COMPLETE_CLEANUP_IN_PROGRESS`` (or rolling back); those leave the vault alone.
  https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requesttypes-delete.html
  https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html

Backup jobs of Amazon RDS (and Aurora, DocumentDB, Neptune, FSx, SAP HANA) cannot be stopped
(https://docs.aws.amazon.com/aws-backup/latest/devguide/API_StopBackupJob.html): they are left
running, their recovery points are deleted as they appear while the time budget lasts, and a
job still running at the end is reported, not a failure of the teardown.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from govdr.backup import contract
from govdr.lambda_support.custom_resource import (
    DELETING_STACK_STATUS,
    CfnRequest,
    RequestFailed,
    stack_status,
    success,
)

LOG = Logger(service=contract.SERVICE)

ACTIVE_JOB_STATES = ("CREATED", "PENDING", "RUNNING")
# ListBackupJobs' ResourceType values whose jobs StopBackupJob does not support:
# https://docs.aws.amazon.com/aws-backup/latest/devguide/API_StopBackupJob.html
UNSTOPPABLE_RESOURCE_TYPES = frozenset(
    {"RDS", "Aurora", "DocumentDB", "Neptune", "FSx", "SAP HANA on Amazon EC2"}
)
VAULT_ENV = contract.ENV_VAULT_NAME
POLL_SECONDS = 10
# Leave time to return (and the framework to answer) after the last poll.
SAFETY_MARGIN_MS = 30_000


class VaultNotEmptyError(RuntimeError):
    """The vault still held recovery points when the time budget ran out."""


class ForeignVaultError(ValueError):
    """The event names a vault other than the environment's own."""


def _is_missing_vault(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code == "ResourceNotFoundException"


def stop_active_jobs(client: Any, vault_name: str) -> tuple[int, int]:
    """Stop backup jobs that would write new recovery points into the vault; return
    (stopped, still running because AWS Backup cannot stop them)."""
    stopped = unstoppable = 0
    for state in ACTIVE_JOB_STATES:
        paginator = client.get_paginator("list_backup_jobs")
        for page in paginator.paginate(ByBackupVaultName=vault_name, ByState=state):
            for job in page.get("BackupJobs", []):
                if job.get("ResourceType") in UNSTOPPABLE_RESOURCE_TYPES:
                    unstoppable += 1
                    continue
                client.stop_backup_job(BackupJobId=job["BackupJobId"])
                stopped += 1
    return stopped, unstoppable


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
) -> tuple[int, int]:
    """Empty the vault; return (recovery points deleted, unstoppable jobs still running).

    A vault that no longer exists counts as empty, so a repeated delete succeeds. While jobs
    that cannot be stopped run, the vault is emptied again every poll until they end or the
    time budget does; a job still running then is reported, not a failure.
    """
    total = 0
    try:
        stopped, unstoppable = stop_active_jobs(client, vault_name)
        if stopped or unstoppable:
            LOG.info(
                json.dumps(
                    {"vault": vault_name, "stopped_jobs": stopped, "unstoppable_jobs": unstoppable}
                )
            )
        while True:
            deleted, remaining = delete_recovery_points(client, vault_name)
            total += deleted
            LOG.info(json.dumps({"vault": vault_name, "deleted": deleted, "remaining": remaining}))
            out_of_time = remaining_ms() < SAFETY_MARGIN_MS + POLL_SECONDS * 1000
            if remaining == 0:
                if unstoppable == 0:
                    return total, 0
                if out_of_time:
                    LOG.warning(
                        json.dumps({"vault": vault_name, "unstoppable_jobs_running": unstoppable})
                    )
                    return total, unstoppable
                sleep(POLL_SECONDS)
                unstoppable = _count_unstoppable(client, vault_name)
                continue
            if out_of_time:
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
            return total, 0
        raise


def _count_unstoppable(client: Any, vault_name: str) -> int:
    """Active jobs of the vault that AWS Backup cannot stop."""
    count = 0
    for state in ACTIVE_JOB_STATES:
        paginator = client.get_paginator("list_backup_jobs")
        for page in paginator.paginate(ByBackupVaultName=vault_name, ByState=state):
            count += sum(
                1
                for job in page.get("BackupJobs", [])
                if job.get("ResourceType") in UNSTOPPABLE_RESOURCE_TYPES
            )
    return count


def handle(
    event: dict[str, Any],
    client: Any,
    remaining_ms: Callable[[], int],
    sleep: Callable[[float], None] = time.sleep,
    *,
    cloudformation: Any,
    own_vault: str,
) -> dict[str, Any]:
    """Carry out one CloudFormation request; its result for the custom-resource framework
    (govdr.lambda_support.custom_resource.success), or RequestFailed with the reason."""
    request = CfnRequest.parse(event)
    vault_name = request.properties.get("BackupVaultName")
    if not vault_name or not isinstance(vault_name, str):
        raise RequestFailed("ResourceProperties.BackupVaultName is required; nothing was emptied")
    if not own_vault:
        # Failed with the fix, not left to CloudFormation's timeout.
        raise RequestFailed(
            f"the function's {VAULT_ENV} is not set, so it cannot tell its own vault; "
            "redeploy the stack (govdr/stacks/backup.py sets it)"
        )
    # Create names the resource after its vault; Update and Delete keep the request's ID.
    physical_id = f"empty-on-delete:{vault_name}" if request.request_type == "Create" else None
    if request.request_type != "Delete":
        return success({}, physical_id)
    data: dict[str, Any] = {}
    try:
        status_now = stack_status(cloudformation, request.stack_id)
        if status_now != DELETING_STACK_STATUS:
            # A replacement, a rename or a rollback: the vault stays as it is.
            LOG.info(json.dumps({"vault": vault_name, "skipped": status_now}))
            return success(
                {
                    "Skipped": f"stack is {status_now}; the vault is emptied only while "
                    f"the stack is {DELETING_STACK_STATUS}"
                }
            )
        if vault_name != own_vault:
            raise ForeignVaultError(
                f"ResourceProperties.BackupVaultName {vault_name!r} is not this "
                f"environment's vault {own_vault!r}; nothing was emptied. Only the vault "
                "of the stack that owns this function is emptied"
            )
        deleted, running = empty_vault(client, vault_name, remaining_ms=remaining_ms, sleep=sleep)
        data["DeletedRecoveryPoints"] = deleted
        if running:
            data["UnstoppableJobsRunning"] = running
            LOG.warning(
                "%s backup jobs AWS Backup cannot stop (RDS) are still running; delete their "
                "recovery points from %s once they finish",
                running,
                vault_name,
            )
        return success(data)
    except ForeignVaultError as exc:
        LOG.error("%s", exc)
        raise RequestFailed(str(exc)) from None
    except Exception as exc:
        LOG.exception("emptying backup vault %s failed", vault_name)
        raise RequestFailed(f"{type(exc).__name__}: {exc}") from None


@LOG.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    import boto3

    region = os.environ.get("AWS_REGION")
    return handle(
        event,
        boto3.client("backup", region_name=region),
        remaining_ms=context.get_remaining_time_in_millis,
        cloudformation=boto3.client("cloudformation", region_name=region),
        own_vault=os.environ.get(VAULT_ENV, ""),
    )
