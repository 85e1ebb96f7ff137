"""The backup-vault cleaner against botocore's request validation and a real HTTP endpoint.

AWS Backup has no local stand-in that holds recovery points, so the AWS side is a botocore
Stubber (requests and responses are validated against the real service model); the
CloudFormation response goes to a real HTTP server on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from govdr.backup.runtime import handler as cleaner
from tests.support.cdk_provider import answer, reason_of

VAULT = "backup-vault-dev"
RP1 = "arn:aws:backup:eu-central-2:123456789012:recovery-point:continuous:db-abc-1"
RP2 = "arn:aws:rds:eu-central-2:123456789012:snapshot:awsbackup:job-2"


STACK_ID = "arn:aws:cloudformation:eu-central-2:123456789012:stack/TapStackdev/1"


def _cfn(status: str | None = "DELETE_IN_PROGRESS") -> Any:
    """A CloudFormation client whose DescribeStacks on STACK_ID reports ``status``
    (None: no call expected)."""
    client = boto3.client(
        "cloudformation",
        region_name="eu-central-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    if status is not None:
        stubber.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "TapStackdev",
                        "StackId": STACK_ID,
                        "CreationTime": "2026-01-01T00:00:00Z",
                        "StackStatus": status,
                    }
                ]
            },
            {"StackName": STACK_ID},
        )
    stubber.activate()
    return client


def run(
    event: dict[str, Any], client: Any, status: str | None = "DELETE_IN_PROGRESS", **kw: Any
) -> None:
    cloudformation = _cfn(status if event["RequestType"] == "Delete" else None)
    kw.setdefault("remaining_ms", lambda: 600_000)
    answer(
        event,
        lambda e: cleaner.handle(e, client, cloudformation=cloudformation, own_vault=VAULT, **kw),
    )


@pytest.fixture
def backup() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "backup",
        region_name="eu-central-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _no_jobs(stubber: Stubber) -> None:
    for state in cleaner.ACTIVE_JOB_STATES:
        stubber.add_response(
            "list_backup_jobs",
            {"BackupJobs": []},
            {"ByBackupVaultName": VAULT, "ByState": state},
        )


def _points(stubber: Stubber, *points: tuple[str, str]) -> None:
    stubber.add_response(
        "list_recovery_points_by_backup_vault",
        {"RecoveryPoints": [{"RecoveryPointArn": arn, "Status": status} for arn, status in points]},
        {"BackupVaultName": VAULT},
    )


def _delete(stubber: Stubber, arn: str) -> None:
    stubber.add_response(
        "delete_recovery_point", {}, {"BackupVaultName": VAULT, "RecoveryPointArn": arn}
    )


def event(url: str, request_type: str = "Delete", **props: str) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": STACK_ID,
        "RequestId": "req-1",
        "LogicalResourceId": "VaultCleanerCustomResource",
        "PhysicalResourceId": f"empty-on-delete:{VAULT}",
        "ResourceProperties": {"BackupVaultName": VAULT, **props},
    }


@pytest.mark.control("CP-9")
def test_delete_empties_the_vault_and_waits_for_deletions(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    client, stubber = backup
    stubber.add_response(
        "list_backup_jobs",
        {"BackupJobs": [{"BackupJobId": "job-9"}]},
        {"ByBackupVaultName": VAULT, "ByState": "CREATED"},
    )
    stubber.add_response("stop_backup_job", {}, {"BackupJobId": "job-9"})
    for state in cleaner.ACTIVE_JOB_STATES[1:]:
        stubber.add_response(
            "list_backup_jobs", {"BackupJobs": []}, {"ByBackupVaultName": VAULT, "ByState": state}
        )
    _points(stubber, (RP1, "COMPLETED"), (RP2, "COMPLETED"))
    _delete(stubber, RP1)
    _delete(stubber, RP2)
    _points(stubber, (RP1, "DELETING"))
    _points(stubber)

    sleeps: list[float] = []
    url, bodies = response_url
    run(event(url), client, sleep=sleeps.append)

    assert sleeps == [cleaner.POLL_SECONDS, cleaner.POLL_SECONDS]
    [body] = bodies
    assert body["Status"] == "SUCCESS"
    assert body["Data"] == {"DeletedRecoveryPoints": 2}
    assert body["PhysicalResourceId"] == f"empty-on-delete:{VAULT}"
    assert body["RequestId"] == "req-1"


def test_out_of_time_fails_clearly_without_hanging(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    client, stubber = backup
    _no_jobs(stubber)
    _points(stubber, (RP1, "DELETING"))
    url, bodies = response_url
    run(event(url), client, remaining_ms=lambda: 20_000, sleep=lambda s: None)
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert "still holds 1 recovery points" in reason_of(body)
    assert "retry the stack deletion" in reason_of(body)


def test_missing_vault_counts_as_empty(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    client, stubber = backup
    stubber.add_client_error(
        "list_backup_jobs",
        service_error_code="ResourceNotFoundException",
        service_message="Backup vault does not exist",
        expected_params={"ByBackupVaultName": VAULT, "ByState": "CREATED"},
    )
    url, bodies = response_url
    run(event(url), client)
    assert bodies[0]["Status"] == "SUCCESS"
    assert bodies[0]["Data"] == {"DeletedRecoveryPoints": 0}


def test_other_errors_fail_the_resource(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    client, stubber = backup
    stubber.add_client_error(
        "list_backup_jobs",
        service_error_code="AccessDeniedException",
        service_message="not authorized",
        expected_params={"ByBackupVaultName": VAULT, "ByState": "CREATED"},
    )
    url, bodies = response_url
    run(event(url), client)
    assert bodies[0]["Status"] == "FAILED"
    assert "not authorized" in reason_of(bodies[0])


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_touch_nothing(
    backup: tuple[Any, Stubber],
    response_url: tuple[str, list[dict[str, Any]]],
    request_type: str,
) -> None:
    client, _ = backup
    url, bodies = response_url
    run(event(url, request_type), client)
    assert bodies[0]["Status"] == "SUCCESS"
    assert bodies[0]["Data"] == {}


def test_invalid_request_is_answered_not_left_hanging(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    client, _ = backup
    url, bodies = response_url
    bad = event(url)
    del bad["ResourceProperties"]["BackupVaultName"]
    run(bad, client, status=None)
    assert bodies[0]["Status"] == "FAILED"
    assert "BackupVaultName is required" in reason_of(bodies[0])


def test_item_7_delete_naming_another_vault_empties_nothing(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """Item 7: the cleaner emptied whatever vault the event named; a Delete naming another
    environment's vault must touch nothing (no Backup call) and fail with the reason."""
    client, _ = backup  # no Backup responses queued: any call would fail the Stubber
    url, bodies = response_url
    run(event(url, BackupVaultName="backup-vault-prod"), client)
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert "'backup-vault-prod' is not this environment's vault 'backup-vault-dev'" in reason_of(
        body
    )
    assert "nothing was emptied" in reason_of(body)


@pytest.mark.parametrize(
    "status", ["UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS"]
)
def test_item_7_delete_during_an_update_empties_nothing(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]], status: str
) -> None:
    """Item 7: a Delete sent for a replaced resource (new PhysicalResourceId) or a vault rename
    arrives while the stack is updating; the cleaner emptied the vault then. It must answer
    SUCCESS without a Backup call."""
    client, _ = backup
    url, bodies = response_url
    replaced = event(url)
    replaced["PhysicalResourceId"] = "empty-on-delete:backup-vault-dev-old"
    run(replaced, client, status=status)
    [body] = bodies
    assert body["Status"] == "SUCCESS"
    assert body["Data"] == {
        "Skipped": f"stack is {status}; the vault is emptied only while the stack is "
        "DELETE_IN_PROGRESS"
    }


def test_item_7_running_rds_job_is_skipped_not_failed(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """Item 7: StopBackupJob is not supported for RDS, so a teardown in the backup window
    failed. The RDS job is not stopped; the vault is emptied while the budget lasts and the
    still-running job is reported in a SUCCESS answer."""
    client, stubber = backup
    rds_job = {"BackupJobId": "job-rds", "ResourceType": "RDS"}
    stubber.add_response(
        "list_backup_jobs", {"BackupJobs": []}, {"ByBackupVaultName": VAULT, "ByState": "CREATED"}
    )
    stubber.add_response(
        "list_backup_jobs",
        {"BackupJobs": [rds_job]},
        {"ByBackupVaultName": VAULT, "ByState": "PENDING"},
    )
    stubber.add_response(
        "list_backup_jobs", {"BackupJobs": []}, {"ByBackupVaultName": VAULT, "ByState": "RUNNING"}
    )
    # First pass: one point, deleted; the vault is then empty but the RDS job still runs.
    _points(stubber, (RP1, "COMPLETED"))
    _delete(stubber, RP1)
    _points(stubber)
    # The job is still active at the next poll; the budget then runs out.
    for state in cleaner.ACTIVE_JOB_STATES:
        stubber.add_response(
            "list_backup_jobs",
            {"BackupJobs": [rds_job] if state == "RUNNING" else []},
            {"ByBackupVaultName": VAULT, "ByState": state},
        )
    _points(stubber)
    budget = iter([600_000, 600_000, 20_000])
    url, bodies = response_url
    run(event(url), client, remaining_ms=lambda: next(budget), sleep=lambda s: None)
    [body] = bodies
    assert body["Status"] == "SUCCESS"
    assert body["Data"] == {"DeletedRecoveryPoints": 1, "UnstoppableJobsRunning": 1}
