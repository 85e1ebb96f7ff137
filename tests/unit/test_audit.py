"""Audit trail: CloudTrail, its buckets, VPC flow logs, and every log group."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.rules.log_groups import log_group_findings
from govdr.compliance.rules.trail import trail_findings
from govdr.compliance.rules.transport_tls import transport_tls_findings
from govdr.compliance.templates import resources
from tests.conftest import TEST_SUFFIX, VARIANT, Synth


def _buckets(audit: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: b["Properties"] for lid, b in resources(audit, "AWS::S3::Bucket")}


@pytest.mark.control("AU-2")
def test_trail_validates_encrypts_and_delivers_to_logs(synth: Synth) -> None:
    audit = synth.raw("audit")
    [(_, trail)] = resources(audit, "AWS::CloudTrail::Trail")
    props = trail["Properties"]
    assert props["TrailName"] == f"trail-{TEST_SUFFIX}"
    assert props["IsLogging"] is True
    assert props["EnableLogFileValidation"] is True
    assert props["IsMultiRegionTrail"] is True
    assert props["IncludeGlobalServiceEvents"] is True
    assert "AuditKey" in json.dumps(props["KMSKeyId"])
    assert "TrailLogGroup" in json.dumps(props["CloudWatchLogsLogGroupArn"])
    assert "TrailBucket" in json.dumps(props["S3BucketName"])


@pytest.mark.control("AU-9")
def test_trail_bucket_is_private_versioned_encrypted_and_access_logged(synth: Synth) -> None:
    buckets = _buckets(synth.raw("audit"))
    trail = next(p for lid, p in buckets.items() if lid.startswith("TrailBucket"))
    access = next(p for lid, p in buckets.items() if lid.startswith("AccessLogBucket"))
    for bucket in (trail, access):
        assert bucket["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    [rule] = trail["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "AuditKey" in json.dumps(rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"])
    assert rule["BucketKeyEnabled"] is True
    assert "AccessLogBucket" in json.dumps(trail["LoggingConfiguration"]["DestinationBucketName"])
    # S3 delivers server access logs only to SSE-S3 buckets.
    [access_rule] = access["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert access_rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


@pytest.mark.control("AU-9")
def test_buckets_deny_non_tls_and_its_failing_twin(synth: Synth) -> None:
    audit = synth.raw("audit")
    assert texts(transport_tls_findings(audit)) == []
    mutated = copy.deepcopy(audit)
    trail_bucket = next(lid for lid in _buckets(mutated) if lid.startswith("TrailBucket"))
    for _, policy in resources(mutated, "AWS::S3::BucketPolicy"):
        if policy["Properties"]["Bucket"] == {"Ref": trail_bucket}:
            statements = policy["Properties"]["PolicyDocument"]["Statement"]
            policy["Properties"]["PolicyDocument"]["Statement"] = [
                s for s in statements if s["Effect"] != "Deny"
            ]
    assert texts(transport_tls_findings(mutated)) == [
        f"{trail_bucket}: bucket policy does not deny requests without TLS"
    ]


def test_buckets_are_emptied_and_deleted_on_teardown(synth: Synth) -> None:
    audit = synth.raw("audit")
    auto_delete = [r["Properties"] for _, r in resources(audit, "Custom::S3AutoDeleteObjects")]
    assert len(auto_delete) == 2
    emptied = {json.dumps(p["BucketName"]) for p in auto_delete}
    for lid in _buckets(audit):
        assert json.dumps({"Ref": lid}) in emptied
        assert audit["Resources"][lid]["DeletionPolicy"] == "Delete"


def test_trail_bucket_policy_lets_cloudtrail_write(synth: Synth) -> None:
    audit = synth.raw("audit")
    statements = [
        s
        for _, p in resources(audit, "AWS::S3::BucketPolicy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    writes = [
        s for s in statements if s.get("Principal") == {"Service": "cloudtrail.amazonaws.com"}
    ]
    assert {s["Action"] for s in writes} == {"s3:GetBucketAcl", "s3:PutObject"}


@pytest.mark.control("AU-2")
def test_flow_logs_capture_all_traffic_to_encrypted_logs(synth: Synth) -> None:
    # Beside the VPC they record (rule packs look for the flow log in the VPC's stack).
    network = synth.raw("network")
    [(_, flow)] = resources(network, "AWS::EC2::FlowLog")
    props = flow["Properties"]
    assert props["TrafficType"] == "ALL"
    assert props["ResourceType"] == "VPC"
    assert props["ResourceId"] == {
        "Ref": next(lid for lid, _ in resources(network, "AWS::EC2::VPC"))
    }
    assert props["LogDestinationType"] == "cloud-watch-logs"
    assert "FlowLogGroup" in json.dumps(props["LogGroupName"])
    assert {"Key": "Name", "Value": f"vpc-flow-log-{TEST_SUFFIX}"} in props["Tags"]
    [(role_id, role)] = [
        (lid, r) for lid, r in resources(network, "AWS::IAM::Role") if lid.startswith("FlowLogRole")
    ]
    assert role["Properties"]["RoleName"] == f"vpc-flow-logs-role-{TEST_SUFFIX}"
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "vpc-flow-logs.amazonaws.com"
    }
    assert "Policies" not in role["Properties"]
    [policy_ref] = role["Properties"]["ManagedPolicyArns"]
    policy = network["Resources"][policy_ref["Ref"]]["Properties"]
    assert policy["ManagedPolicyName"] == f"vpc-flow-logs-policy-{TEST_SUFFIX}"
    [statement] = policy["PolicyDocument"]["Statement"]
    assert "FlowLogGroup" in json.dumps(statement["Resource"])
    assert props["DeliverLogsPermissionArn"] == {"Fn::GetAtt": [role_id, "Arn"]}


def _log_groups(synth: Synth) -> dict[str, dict[str, Any]]:
    return {
        g["Properties"]["LogGroupName"]: g
        for t in synth.all_raw().values()
        for _, g in resources(t, "AWS::Logs::LogGroup")
    }


@pytest.mark.control("AU-11")
def test_every_platform_log_group_exists_encrypted_kept_and_deleted(synth: Synth) -> None:
    groups = _log_groups(synth)
    assert set(groups) == {
        f"cloudtrail-logs-{TEST_SUFFIX}",
        f"vpc-flow-logs-{TEST_SUFFIX}",
        f"/aws/rds/instance/rds-{TEST_SUFFIX}/postgresql",
        f"/aws/rds/instance/rds-{TEST_SUFFIX}/upgrade",
        f"/aws/lambda/rds-rotation-{TEST_SUFFIX}",
        f"/aws/lambda/backup-vault-cleaner-{TEST_SUFFIX}",
        f"/aws/lambda/rds-txlog-rotation-{TEST_SUFFIX}",
        f"/aws/lambda/txlog-bootstrap-{TEST_SUFFIX}",
        # CDK's custom-resource framework in front of each custom-resource handler
        f"/aws/lambda/txlog-bootstrap-provider-{TEST_SUFFIX}",
        f"/aws/lambda/backup-vault-cleaner-provider-{TEST_SUFFIX}",
        f"/aws/lambda/txlog-archiver-{TEST_SUFFIX}",
        f"/aws/lambda/rpo-monitor-{TEST_SUFFIX}",
    }
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == 365
        assert "LogsKey" in json.dumps(group["Properties"]["KmsKeyId"])
        assert group["DeletionPolicy"] == "Delete"
    for name, template in synth.all_raw().items():
        assert texts(log_group_findings(template)) == [], name


def test_log_retention_follows_config(variant_synth: Synth) -> None:
    groups = _log_groups(variant_synth)
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {731}
    assert f"vpc-flow-logs-{VARIANT.environment_suffix}" in groups


@pytest.mark.control("AU-11")
def test_log_group_check_failing_twins(synth: Synth) -> None:
    audit = copy.deepcopy(synth.raw("audit"))
    [(lid, group), *_] = resources(audit, "AWS::Logs::LogGroup")
    del group["Properties"]["KmsKeyId"]
    group["Properties"]["RetentionInDays"] = 30
    assert texts(log_group_findings(audit)) == [
        f"{lid}: log group is not encrypted with a KMS key",
        f"{lid}: retention 30 days, must be set and >= 365",
    ]
    del group["Properties"]["RetentionInDays"]
    assert f"{lid}: retention unlimited days, must be set and >= 365" in texts(
        log_group_findings(audit)
    )


@pytest.mark.control("AU-9")
def test_trail_check_and_its_failing_twins(synth: Synth) -> None:
    audit = synth.raw("audit")
    assert texts(trail_findings(audit)) == []
    mutated = copy.deepcopy(audit)
    [(lid, trail)] = resources(mutated, "AWS::CloudTrail::Trail")
    trail["Properties"]["EnableLogFileValidation"] = False
    trail["Properties"]["IsMultiRegionTrail"] = False
    del trail["Properties"]["KMSKeyId"]
    del trail["Properties"]["CloudWatchLogsLogGroupArn"]
    assert texts(trail_findings(mutated)) == [
        f"{lid}: EnableLogFileValidation is not True",
        f"{lid}: IsMultiRegionTrail is not True",
        f"{lid}: KMSKeyId is not set",
        f"{lid}: CloudWatchLogsLogGroupArn is not set",
    ]
