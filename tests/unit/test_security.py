"""Encryption: customer-managed keys that rotate, carry the suffix, and serve named services."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.rules.key_rotation import key_rotation_findings
from govdr.compliance.templates import resources
from govdr.constructs.service_key import ADMIN_ACTIONS
from tests.conftest import TEST_SUFFIX, Synth

EXPECTED = {
    "rds": "rds",
    "secrets": "secretsmanager",
    "efs": "elasticfilesystem",
    "audit": "s3",
    "backup": "backup",
}
ALL_ALIASES = {*EXPECTED, "logs", "alarms", "txlog"}


def _keys_by_alias(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    aliases = {
        a["Properties"]["AliasName"]: a["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]
        for _, a in resources(template, "AWS::KMS::Alias")
    }
    return {alias: template["Resources"][lid] for alias, lid in aliases.items()}


@pytest.mark.control("SC-13")
def test_one_key_per_domain_with_suffixed_alias(synth: Synth) -> None:
    keys = _keys_by_alias(synth.raw("security"))
    assert sorted(keys) == sorted(f"alias/{n}-{TEST_SUFFIX}" for n in ALL_ALIASES)


@pytest.mark.control("SC-12")
def test_keys_rotate_with_seven_day_window(synth: Synth) -> None:
    for key in _keys_by_alias(synth.raw("security")).values():
        assert key["Properties"]["EnableKeyRotation"] is True
        assert key["Properties"]["PendingWindowInDays"] == 7
        assert key["Properties"].get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"


@pytest.mark.control("SC-12")
def test_key_rotation_check_and_its_failing_twin(synth: Synth) -> None:
    template = synth.raw("security")
    assert texts(key_rotation_findings(template)) == []
    mutated = copy.deepcopy(template)
    lid = next(lid for lid, _ in resources(mutated, "AWS::KMS::Key"))
    mutated["Resources"][lid]["Properties"]["EnableKeyRotation"] = False
    mutated["Resources"][lid]["Properties"]["PendingWindowInDays"] = 3
    assert texts(key_rotation_findings(mutated)) == [
        f"{lid}: key rotation is not enabled",
        f"{lid}: pending window must be 7-30 days",
    ]


@pytest.mark.parametrize(("short", "service"), sorted(EXPECTED.items()))
@pytest.mark.control("SC-12")
def test_key_use_is_scoped_to_its_service(synth: Synth, short: str, service: str) -> None:
    key = _keys_by_alias(synth.raw("security"))[f"alias/{short}-{TEST_SUFFIX}"]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements if "Sid" in s}
    assert {"KeyAdministration", "UseThroughServices"} <= set(by_sid)
    assert set(by_sid) - {"KeyAdministration", "UseThroughServices"} <= {
        "CloudTrailEncryptLogs",
        "CloudTrailDescribeKey",
        "CloudTrailDecryptForBucketKey",
    }
    # Secrets Manager's L2 adds its own grant for the account; it must also go through
    # the one service.
    for extra in (s for s in statements if "Sid" not in s):
        assert extra["Condition"]["StringEquals"]["kms:ViaService"] == (
            f"{service}.eu-central-2.amazonaws.com"
        )

    admin = by_sid["KeyAdministration"]
    assert sorted(admin["Action"]) == sorted(ADMIN_ACTIONS)
    # The account can administer the key but not use it for cryptography directly.
    assert not {"kms:Decrypt", "kms:Encrypt", "kms:*"} & set(admin["Action"])

    use = by_sid["UseThroughServices"]
    assert "kms:Decrypt" in use["Action"]
    condition = use["Condition"]["StringEquals"]
    assert condition["kms:CallerAccount"] == {"Ref": "AWS::AccountId"}
    assert condition["kms:ViaService"] == [
        {"Fn::Join": ["", [f"{service}.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    ]


def test_no_key_grants_use_to_accounts_or_roles_without_conditions(synth: Synth) -> None:
    for key in _keys_by_alias(synth.raw("security")).values():
        for statement in key["Properties"]["KeyPolicy"]["Statement"]:
            actions = set(statement["Action"])
            if (
                actions & {"kms:Decrypt", "kms:Encrypt", "kms:*"}
                and "AWS" in statement["Principal"]
            ):
                assert "Condition" in statement


def test_logs_key_is_bound_to_this_accounts_log_groups(synth: Synth) -> None:
    key = _keys_by_alias(synth.raw("security"))[f"alias/logs-{TEST_SUFFIX}"]
    [use] = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if "logs." in json.dumps(s)]
    assert use["Sid"] == "LogsEncryptLogGroups"
    assert "kms:EncryptionContext:aws:logs:arn" in use["Condition"]["ArnLike"]
    # A DescribeKey request carries no encryption context: under this condition it would
    # never be allowed, so it is not listed.
    assert "kms:DescribeKey" not in use["Action"]


def test_fault_3_cloudtrail_describe_key_is_not_bound_to_an_encryption_context(
    synth: Synth,
) -> None:
    """Fault 3: CloudTrail's kms:DescribeKey sat only under a
    kms:EncryptionContext:aws:cloudtrail:arn condition, which a DescribeKey request never
    carries, so CreateTrail could fail with InsufficientEncryptionPolicyException."""
    key = _keys_by_alias(synth.raw("security"))[f"alias/audit-{TEST_SUFFIX}"]
    by_sid = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"] if "Sid" in s}
    trail_arn = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":cloudtrail:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":trail/trail-{TEST_SUFFIX}",
            ],
        ]
    }
    describe = by_sid["CloudTrailDescribeKey"]
    assert describe["Action"] == "kms:DescribeKey"
    assert describe["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert describe["Condition"] == {"StringEquals": {"aws:SourceArn": trail_arn}}
    encrypt = by_sid["CloudTrailEncryptLogs"]
    assert encrypt["Action"] == "kms:GenerateDataKey*"
    assert encrypt["Condition"]["StringEquals"] == {"aws:SourceArn": trail_arn}
    assert "kms:EncryptionContext:aws:cloudtrail:arn" in encrypt["Condition"]["StringLike"]
    decrypt = by_sid["CloudTrailDecryptForBucketKey"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Condition"] == {"StringEquals": {"aws:SourceArn": trail_arn}}


def test_alarms_key_serves_the_notification_publishers(synth: Synth) -> None:
    key = _keys_by_alias(synth.raw("security"))[f"alias/alarms-{TEST_SUFFIX}"]
    actions = {
        s["Principal"].get("Service"): sorted(s["Action"])
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if "Service" in s["Principal"]
    }
    # SNS publishers need exactly these two actions on the topic's key:
    # https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#sns-what-permissions-for-sse
    assert actions == {
        "cloudwatch.amazonaws.com": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "events.rds.amazonaws.com": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "events.amazonaws.com": ["kms:Decrypt", "kms:GenerateDataKey*"],
    }


def test_service_key_requires_a_service() -> None:
    import aws_cdk as cdk

    from govdr.constructs.service_key import ServiceKey

    stack = cdk.Stack(cdk.App())
    with pytest.raises(ValueError, match="at least one service"):
        ServiceKey(stack, "K", alias_name="alias/x-dev", description="x", retain=False)


def test_service_principal_statement() -> None:
    import aws_cdk as cdk
    from aws_cdk.assertions import Match, Template

    from govdr.constructs.service_key import ServiceKey, ServiceUse

    stack = cdk.Stack(cdk.App())
    ServiceKey(
        stack,
        "K",
        alias_name="alias/logs-dev",
        description="logs",
        service_uses=[
            ServiceUse(
                sid="UseByLogs",
                principal="logs.amazonaws.com",
                actions=("kms:Decrypt",),
                doc="https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
                conditions={"StringEquals": {"aws:SourceAccount": "123456789012"}},
            )
        ],
        retain=False,
    )
    Template.from_stack(stack).has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "UseByLogs",
                                "Principal": {"Service": "logs.amazonaws.com"},
                                "Condition": {
                                    "StringEquals": {"aws:SourceAccount": "123456789012"}
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_txlog_integrity_key_is_usable_only_with_this_archives_context(synth: Synth) -> None:
    key = _keys_by_alias(synth.raw("security"))[f"alias/txlog-{TEST_SUFFIX}"]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    [use] = [s for s in statements if s.get("Sid") == "ArchiveIntegrityKeysOfThisEnvironment"]
    assert sorted(use["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    condition = use["Condition"]["StringEquals"]
    assert condition["kms:EncryptionContext:govdr:txlog:slot"] == f"govdr_txlog_{TEST_SUFFIX}"
    assert sorted(use["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == [
        "govdr:txlog:database",
        "govdr:txlog:slot",
        "govdr:txlog:system_identifier",
        "govdr:txlog:timeline",
    ]
    # No service principal and no via-service use: only the account's IAM policies, bound.
    assert all("Service" not in s["Principal"] for s in statements)
