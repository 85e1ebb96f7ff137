"""The Lambda entry points of the custom-resource functions, called as Lambda calls them
(event, context): their environment, their AWS clients and the response they send."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from govdr.backup.runtime import handler as cleaner
from govdr.txlog.runtime import bootstrap
from tests.support.cdk_provider import answer, reason_of
from tests.support.lambda_context import LambdaTestContext

REGION = "eu-central-2"
STACK_ID = "arn:aws:cloudformation:eu-central-2:123456789012:stack/TapStackdev/1"


def _event(url: str, request_type: str, logical_id: str, **props: str) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": STACK_ID,
        "RequestId": "req-entry",
        "LogicalResourceId": logical_id,
        "ResourceProperties": dict(props),
    }


def test_the_cleaner_entry_answers_a_create_with_its_own_vault(
    monkeypatch: pytest.MonkeyPatch, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = response_url
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv(cleaner.VAULT_ENV, "backup-vault-dev")
    with mock_aws():
        answer(
            _event(url, "Create", "VaultCleanerCustomResource", BackupVaultName="backup-vault-dev"),
            lambda e: cleaner.handler(e, LambdaTestContext()),
        )
    [body] = bodies
    assert (body["Status"], body["RequestId"]) == ("SUCCESS", "req-entry")


def test_the_cleaner_entry_answers_without_its_vault_setting(
    monkeypatch: pytest.MonkeyPatch, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """Before: a KeyError, no answer, and CloudFormation waiting for its timeout. Now: FAILED
    with the reason, and no vault touched (no Backup call is made under moto here)."""
    url, bodies = response_url
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv(cleaner.VAULT_ENV, raising=False)
    with mock_aws():
        answer(
            _event(url, "Delete", "VaultCleanerCustomResource", BackupVaultName="backup-vault-dev"),
            lambda e: cleaner.handler(e, LambdaTestContext()),
        )
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert f"the function's {cleaner.VAULT_ENV} is not set" in reason_of(body)


def test_the_bootstrap_entry_reads_its_environment_and_refuses_another_slot(
    monkeypatch: pytest.MonkeyPatch, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """A Create naming a slot other than the function's own is refused before any secret is
    read or any database reached: the event cannot point the bootstrap elsewhere."""
    url, bodies = response_url
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        arns = {
            name: sm.create_secret(Name=name, SecretString=json.dumps({"password": "x" * 24}))[
                "ARN"
            ]
            for name in ("master", "replication")
        }
        monkeypatch.setenv("TXLOG_SLOT_NAME", "govdr_txlog")
        monkeypatch.setenv("MASTER_SECRET_ARN", arns["master"])
        monkeypatch.setenv("REPLICATION_SECRET_ARN", arns["replication"])
        answer(
            _event(
                url,
                "Create",
                "TxlogBootstrapCustomResource",
                MasterSecretArn=arns["master"],
                ReplicationSecretArn=arns["replication"],
                SlotName="another_slot",
                DatabaseName="govdr",
            ),
            lambda e: bootstrap.handler(e, LambdaTestContext()),
        )
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert "'another_slot' is not this environment's 'govdr_txlog'" in reason_of(body)


def test_the_bootstrap_entry_answers_without_its_settings(
    monkeypatch: pytest.MonkeyPatch, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    """Before: a KeyError outside the request handling, no answer, and CloudFormation waiting
    for its timeout. Now: FAILED naming what the environment lacks; nothing is touched."""
    url, bodies = response_url
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("TXLOG_SLOT_NAME", "govdr_txlog")
    for name in ("MASTER_SECRET_ARN", "REPLICATION_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        answer(
            _event(
                url,
                "Delete",
                "TxlogBootstrapCustomResource",
                MasterSecretArn="m",
                ReplicationSecretArn="r",
                SlotName="govdr_txlog",
            ),
            lambda e: bootstrap.handler(e, LambdaTestContext()),
        )
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert reason_of(body).startswith(
        "the function's environment lacks MASTER_SECRET_ARN, REPLICATION_SECRET_ARN"
    )
