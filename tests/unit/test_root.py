"""Root stack: nested stacks, outputs, names, teardown, and pinned logical IDs."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.rules.destroyable import STATEFUL_TYPES, destroyability_findings
from govdr.compliance.rules.naming import naming_findings
from govdr.compliance.templates import resources
from govdr.synth import NESTED
from tests.conftest import TEST_SUFFIX, Synth

OUTPUTS = {
    "EnvironmentSuffix",
    "VpcId",
    "DatabaseSubnetIds",
    "FunctionSubnetIds",
    "DatabaseInstanceIdentifier",
    "DatabaseEndpointAddress",
    "DatabaseEndpointPort",
    "DatabaseSecurityGroupId",
    "DatabaseSecretArn",
    "DatabaseSecretReadPolicyArn",
    "DrillConnectPolicyArn",
    "FileSystemId",
    "TxlogAccessPointId",
    "TxlogSecurityGroupId",
    "DatabaseKeyArn",
    "SecretsKeyArn",
    "TxlogIntegrityKeyArn",
    "FileSystemKeyArn",
    "LogsKeyArn",
    "AuditKeyArn",
    "AlarmsKeyArn",
    "BackupKeyArn",
    "AlarmTopicArn",
    "DashboardName",
    "RdsEventSubscriptionName",
    "TrailArn",
    "TrailBucketName",
    "FlowLogGroupName",
    "BackupVaultName",
    "BackupPlanId",
    "ReplicationSecretArn",
    "TxlogSlotName",
    "TxlogSlotWalKeepMiB",
    "TxlogRetentionDays",
    "TxlogArchiverFunctionName",
    "RpoMonitorFunctionName",
    "FailoverDrillTemplateId",
}

# Renaming any of these replaces a stateful resource (data loss): change them only with a
# migration plan. Nested-stack IDs hash the root stack name, so they hold for TEST_SUFFIX.
PINNED_LOGICAL_IDS = {
    "root": {
        "AWS::CloudFormation::Stack": {
            "NetworkNestedStackNetworkNestedStackResource0124E108",
            "SecurityNestedStackSecurityNestedStackResourceA55AC602",
            "DatabaseNestedStackDatabaseNestedStackResource223659CE",
            "StorageNestedStackStorageNestedStackResource9807768E",
            "BackupNestedStackBackupNestedStackResourceCC3124C7",
            "AuditNestedStackAuditNestedStackResourceF69BD105",
            "MonitoringNestedStackMonitoringNestedStackResource001F85AB",
        }
    },
    "security": {
        "AWS::KMS::Key": {
            "DatabaseKey7998E78F",
            "SecretsKey0D2EC683",
            "FileSystemKey5A6992BB",
            "LogsKeyFE4C4A83",
            "TxlogIntegrityKey8E548E8E",
            "AuditKey55555D67",
            "AlarmsKeyBF5F52A3",
            "BackupKey1226E6A1",
        }
    },
    "backup": {"AWS::Backup::BackupVault": {"Vault23237E5B"}},
    "audit": {"AWS::S3::Bucket": {"AccessLogBucketDA470295", "TrailBucketA831CE63"}},
    "database": {
        "AWS::RDS::DBInstance": {"DatabaseB269D8BB"},
        "AWS::SecretsManager::Secret": {"MasterSecretA11BF785", "ReplicationSecret4730E2A0"},
        "AWS::RDS::DBParameterGroup": {"ParameterGroup5E32DECB"},
    },
    "storage": {"AWS::EFS::FileSystem": {"FileSystem8A8E25C0"}},
    "network": {"AWS::EC2::VPC": {"Vpc8378EB38"}},
}


def test_root_targets_eu_central_2_with_its_nested_stacks(synth: Synth) -> None:
    assert synth.stack.region == "eu-central-2"
    assert synth.stack.stack_name == f"TapStack{TEST_SUFFIX}"
    synth.root.resource_count_is("AWS::CloudFormation::Stack", len(NESTED))


def test_root_outputs_have_stable_names_and_descriptions(synth: Synth) -> None:
    outputs = synth.raw()["Outputs"]
    assert set(outputs) == OUTPUTS
    for output in outputs.values():
        assert output["Description"]
    assert outputs["EnvironmentSuffix"]["Value"] == TEST_SUFFIX


def documented_outputs(text: str) -> set[str]:
    """The output names docs/architecture.md's "Outputs" section lists."""
    section = text.split("\n## Outputs\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([A-Z][A-Za-z0-9]+)`", section))


def test_the_architecture_lists_every_output_and_no_other() -> None:
    text = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    assert documented_outputs(text) == OUTPUTS
    # Twin: a section missing one output, or naming one the stack lacks, is told apart.
    assert documented_outputs(text.replace("`TxlogSlotWalKeepMiB`", "")) != OUTPUTS
    assert documented_outputs(text.replace("`VpcId`", "`VpcArn`")) != OUTPUTS


@pytest.mark.parametrize(("template", "types"), sorted(PINNED_LOGICAL_IDS.items()))
@pytest.mark.control("CM-2")
def test_stateful_logical_ids_are_pinned(
    synth: Synth, template: str, types: dict[str, set[str]]
) -> None:
    raw = synth.raw(None if template == "root" else template)
    for rtype, ids in types.items():
        assert {lid for lid, _ in resources(raw, rtype)} == ids, rtype


def test_every_named_resource_carries_the_suffix(synth: Synth) -> None:
    for name, template in synth.all_raw().items():
        assert texts(naming_findings(template, TEST_SUFFIX)) == [], name


def test_naming_check_failing_twins(synth: Synth) -> None:
    database = copy.deepcopy(synth.raw("database"))
    [(lid, instance)] = resources(database, "AWS::RDS::DBInstance")
    instance["Properties"]["DBInstanceIdentifier"] = "citizen-db"
    [(sid, secret), *_] = resources(database, "AWS::SecretsManager::Secret")
    del secret["Properties"]["Name"]
    findings = texts(naming_findings(database, TEST_SUFFIX))
    assert f"{lid} (AWS::RDS::DBInstance): name 'citizen-db' does not end with -{TEST_SUFFIX}" in (
        findings
    )
    assert f"{sid} (AWS::SecretsManager::Secret): has no physical name" in findings
    instance["Properties"]["DBInstanceIdentifier"] = {"Ref": "Something"}
    assert f"{lid} (AWS::RDS::DBInstance): physical name is not a literal" in texts(
        naming_findings(database, TEST_SUFFIX)
    )


def test_tags_identify_owner_and_data_class(synth: Synth) -> None:
    [(_, instance)] = resources(synth.raw("database"), "AWS::RDS::DBInstance")
    tags = {t["Key"]: t["Value"] for t in instance["Properties"]["Tags"]}
    assert tags == {
        "Project": "govdr",
        "Environment": TEST_SUFFIX,
        "DataClassification": "citizen-data",
        "ManagedBy": "aws-cdk",
    }


def test_default_deployment_is_fully_destroyable(synth: Synth) -> None:
    for name, template in synth.all_raw().items():
        assert texts(destroyability_findings(template)) == [], name


def test_destroyability_check_failing_twins(synth: Synth) -> None:
    database = copy.deepcopy(synth.raw("database"))
    [(lid, instance)] = resources(database, "AWS::RDS::DBInstance")
    instance["DeletionPolicy"] = "Snapshot"
    instance["Properties"]["DeletionProtection"] = True
    instance["Properties"]["DeleteAutomatedBackups"] = False
    [(sid, secret), *_] = resources(database, "AWS::SecretsManager::Secret")
    del secret["DeletionPolicy"]
    [(gid, group)] = resources(database, "AWS::RDS::DBParameterGroup")
    group["DeletionPolicy"] = "Retain"
    assert sorted(texts(destroyability_findings(database))) == sorted(
        [
            f"{lid} (AWS::RDS::DBInstance): DeletionPolicy is Snapshot, not Delete",
            f"{lid}: DeletionProtection is not false",
            f"{lid}: automated backups would outlive the instance",
            f"{sid} (AWS::SecretsManager::Secret): DeletionPolicy is unset, not Delete",
            f"{gid} (AWS::RDS::DBParameterGroup): DeletionPolicy is Retain, not Delete",
        ]
    )


def test_production_switch_protects_every_stateful_resource(prod_synth: Synth) -> None:
    templates = prod_synth.all_raw()
    [(_, instance)] = resources(templates["database"], "AWS::RDS::DBInstance")
    assert instance["DeletionPolicy"] == "Snapshot"
    assert instance["Properties"]["DeletionProtection"] is True
    assert instance["Properties"]["DeleteAutomatedBackups"] is False
    stateful = [
        (name, lid, r)
        for name, t in templates.items()
        for lid, r in t["Resources"].items()
        if r["Type"] in STATEFUL_TYPES and r["Type"] != "AWS::RDS::DBInstance"
    ]
    assert {r["Type"] for _, _, r in stateful} == STATEFUL_TYPES - {"AWS::RDS::DBInstance"}
    for name, lid, resource in stateful:
        assert resource["DeletionPolicy"] == "Retain", (name, lid)
    # Nothing empties the audit buckets when the prod switch is on.
    for template in templates.values():
        assert not list(resources(template, "Custom::S3AutoDeleteObjects"))
    findings = [f for t in templates.values() for f in texts(destroyability_findings(t))]
    assert len(findings) == len(stateful) + 3
