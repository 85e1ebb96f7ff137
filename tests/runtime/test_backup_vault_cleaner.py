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

from runtime.backup_vault_cleaner import handler as cleaner

VAULT = "backup-vault-dev"
RP1 = "arn:aws:backup:eu-central-2:123456789012:recovery-point:continuous:db-abc-1"
RP2 = "arn:aws:rds:eu-central-2:123456789012:snapshot:awsbackup:job-2"


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
        "StackId": "arn:aws:cloudformation:eu-central-2:123456789012:stack/TapStackdev/1",
        "RequestId": "req-1",
        "LogicalResourceId": "VaultCleanerResource",
        "PhysicalResourceId": f"empty-on-delete:{VAULT}",
        "ResourceProperties": {"BackupVaultName": VAULT, **props},
    }


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
    cleaner.handle(event(url), client, remaining_ms=lambda: 600_000, sleep=sleeps.append)

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
    cleaner.handle(event(url), client, remaining_ms=lambda: 20_000, sleep=lambda s: None)
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert "still holds 1 recovery points" in body["Reason"]
    assert "retry the stack deletion" in body["Reason"]


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
    cleaner.handle(event(url), client, remaining_ms=lambda: 600_000)
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
    cleaner.handle(event(url), client, remaining_ms=lambda: 600_000)
    assert bodies[0]["Status"] == "FAILED"
    assert "not authorized" in bodies[0]["Reason"]


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_touch_nothing(
    backup: tuple[Any, Stubber],
    response_url: tuple[str, list[dict[str, Any]]],
    request_type: str,
) -> None:
    client, _ = backup
    url, bodies = response_url
    cleaner.handle(event(url, request_type), client, remaining_ms=lambda: 600_000)
    assert bodies[0]["Status"] == "SUCCESS"
    assert bodies[0]["Data"] == {}


def test_invalid_request_is_answered_not_left_hanging(
    backup: tuple[Any, Stubber], response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    client, _ = backup
    url, bodies = response_url
    bad = event(url)
    del bad["ResourceProperties"]["BackupVaultName"]
    cleaner.handle(bad, client, remaining_ms=lambda: 600_000)
    assert bodies[0]["Status"] == "FAILED"
    assert "BackupVaultName is required" in bodies[0]["Reason"]
