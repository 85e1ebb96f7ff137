"""Storage: encrypted, TLS-only EFS with mount targets in every AZ and a txlog access point."""

from __future__ import annotations

import copy

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.rules.file_system_tls import file_system_tls_findings
from govdr.compliance.templates import resources
from tests.conftest import TEST_SUFFIX, Synth


@pytest.mark.control("SC-28")
def test_file_system_encryption_throughput_backups(synth: Synth) -> None:
    storage = synth.raw("storage")
    [(_, fs)] = resources(storage, "AWS::EFS::FileSystem")
    props = fs["Properties"]
    assert props["Encrypted"] is True
    assert "FileSystemKey" in props["KmsKeyId"]["Ref"]
    assert props["ThroughputMode"] == "elastic"
    assert props["PerformanceMode"] == "generalPurpose"
    # Backups come from the govdr plan (test_backup.py), not EFS's AWS-managed vault.
    assert props["BackupPolicy"] == {"Status": "DISABLED"}
    # Segments go to Infrequent Access after a week and stay there when an incident reads them.
    assert props["LifecyclePolicies"] == [{"TransitionToIA": "AFTER_7_DAYS"}]
    assert {"Key": "Name", "Value": f"efs-{TEST_SUFFIX}"} in props["FileSystemTags"]


def test_file_system_policy_denies_non_tls_and_anonymous(synth: Synth) -> None:
    [(_, fs)] = resources(synth.raw("storage"), "AWS::EFS::FileSystem")
    statements = fs["Properties"]["FileSystemPolicy"]["Statement"]
    deny = next(s for s in statements if s.get("Sid") == "DenyNonTlsAccess")
    assert deny["Effect"] == "Deny"
    assert deny["Action"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # With anonymous access off, client actions need a mount target and an IAM identity.
    allows = [s for s in statements if s["Effect"] == "Allow"]
    for allow in allows:
        assert allow["Condition"]["Bool"]["elasticfilesystem:AccessedViaMountTarget"] == "true"


@pytest.mark.control("SC-8")
def test_file_system_tls_check_and_its_failing_twins(synth: Synth) -> None:
    storage = synth.raw("storage")
    assert texts(file_system_tls_findings(storage)) == []
    [(lid, _)] = resources(storage, "AWS::EFS::FileSystem")

    no_deny = copy.deepcopy(storage)
    policy = no_deny["Resources"][lid]["Properties"]["FileSystemPolicy"]
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "DenyNonTlsAccess"]
    assert texts(file_system_tls_findings(no_deny)) == [
        f"{lid}: file-system policy does not deny access without TLS "
        "(Deny when aws:SecureTransport is false)"
    ]

    unencrypted = copy.deepcopy(storage)
    del unencrypted["Resources"][lid]["Properties"]["KmsKeyId"]
    assert texts(file_system_tls_findings(unencrypted)) == [
        f"{lid}: file system is not encrypted with a customer-managed key"
    ]


def test_mount_targets_in_every_az(synth: Synth) -> None:
    targets = [t["Properties"] for _, t in resources(synth.raw("storage"), "AWS::EFS::MountTarget")]
    assert len(targets) == 3
    subnets = {t["SubnetId"]["Ref"] for t in targets}
    assert len(subnets) == 3
    assert all("FunctionsSubnet" in s for s in subnets)
    for target in targets:
        assert ["FileSystemSecurityGroup" in g["Ref"] for g in target["SecurityGroups"]] == [True]


def test_txlog_access_point_pins_identity_and_root(synth: Synth) -> None:
    [(_, ap)] = resources(synth.raw("storage"), "AWS::EFS::AccessPoint")
    props = ap["Properties"]
    assert props["PosixUser"] == {"Uid": "5432", "Gid": "5432"}
    assert props["RootDirectory"] == {
        "Path": "/txlog",
        "CreationInfo": {"OwnerUid": "5432", "OwnerGid": "5432", "Permissions": "750"},
    }
    assert {"Key": "Name", "Value": f"efs-ap-txlog-{TEST_SUFFIX}"} in props["AccessPointTags"]
