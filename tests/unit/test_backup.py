"""Backups (CP-9): CMK vault, daily plan with continuous backup, coverage, vault teardown."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.rules.backup_coverage import backup_coverage_findings
from govdr.compliance.templates import resources
from tests.conftest import TEST_SUFFIX, Synth


def _plan(synth: Synth) -> dict[str, Any]:
    [(_, plan)] = resources(synth.raw("backup"), "AWS::Backup::BackupPlan")
    return dict(plan["Properties"]["BackupPlan"])


def test_vault_is_encrypted_with_the_backup_key(synth: Synth) -> None:
    [(_, vault)] = resources(synth.raw("backup"), "AWS::Backup::BackupVault")
    assert vault["Properties"]["BackupVaultName"] == f"backup-vault-{TEST_SUFFIX}"
    assert "BackupKey" in json.dumps(vault["Properties"]["EncryptionKeyArn"])
    assert vault["DeletionPolicy"] == "Delete"


def test_plan_runs_daily_with_continuous_backup_and_config_retention(synth: Synth) -> None:
    plan = _plan(synth)
    assert plan["BackupPlanName"] == f"backup-plan-{TEST_SUFFIX}"
    [rule] = plan["BackupPlanRule"]
    assert rule["EnableContinuousBackup"] is True
    assert rule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert rule["Lifecycle"] == {"DeleteAfterDays": 14}
    assert rule["StartWindowMinutes"] == 60
    assert rule["CompletionWindowMinutes"] == 240
    assert "CopyActions" not in rule


@pytest.mark.control("CP-6")
def test_cross_region_copy_when_configured(variant_synth: Synth) -> None:
    [rule] = _plan(variant_synth)["BackupPlanRule"]
    assert rule["Lifecycle"] == {"DeleteAfterDays": 35}
    assert rule["CopyActions"] == [
        {
            "DestinationBackupVaultArn": (
                "arn:aws:backup:eu-west-1:123456789012:backup-vault:govdr-copy"
            ),
            "Lifecycle": {"DeleteAfterDays": 35},
        }
    ]


def _selection(template: dict[str, Any]) -> dict[str, Any]:
    [(_, selection)] = resources(template, "AWS::Backup::BackupSelection")
    return dict(selection["Properties"])


@pytest.mark.control("CP-9")
def test_selections_cover_database_and_file_system_in_one_plan(synth: Synth) -> None:
    database, storage = synth.raw("database"), synth.raw("storage")
    db_sel, efs_sel = _selection(database), _selection(storage)
    assert db_sel["BackupSelection"]["SelectionName"] == f"backup-rds-{TEST_SUFFIX}"
    assert efs_sel["BackupSelection"]["SelectionName"] == f"backup-efs-{TEST_SUFFIX}"
    [(db_id, _)] = resources(database, "AWS::RDS::DBInstance")
    [(fs_id, _)] = resources(storage, "AWS::EFS::FileSystem")
    assert db_id in json.dumps(db_sel["BackupSelection"]["Resources"])
    assert ":rds:" in json.dumps(db_sel["BackupSelection"]["Resources"])
    assert fs_id in json.dumps(efs_sel["BackupSelection"]["Resources"])
    assert ":elasticfilesystem:" in json.dumps(efs_sel["BackupSelection"]["Resources"])
    # Both selections point at the same plan through the same parameter of the root stack.
    assert "BackupPlan" in db_sel["BackupPlanId"]["Ref"]
    assert "BackupPlan" in efs_sel["BackupPlanId"]["Ref"]
    assert texts(backup_coverage_findings(database)) == []
    assert texts(backup_coverage_findings(storage)) == []


@pytest.mark.control("CP-9")
def test_backup_coverage_failing_twins(synth: Synth) -> None:
    for name, rtype in (("database", "AWS::RDS::DBInstance"), ("storage", "AWS::EFS::FileSystem")):
        mutated = copy.deepcopy(synth.raw(name))
        for lid, _ in list(resources(mutated, "AWS::Backup::BackupSelection")):
            del mutated["Resources"][lid]
        [(resource_id, _)] = resources(mutated, rtype)
        assert texts(backup_coverage_findings(mutated)) == [
            f"{resource_id} ({rtype}): not in any backup selection"
        ]


def test_selection_role_is_the_backup_service_role(synth: Synth) -> None:
    [(_lid, role)] = [
        (lid, r)
        for lid, r in resources(synth.raw("backup"), "AWS::IAM::Role")
        if lid.startswith("SelectionRole")
    ]
    assert role["Properties"]["RoleName"] == f"backup-role-{TEST_SUFFIX}"
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust[0]["Principal"] == {"Service": "backup.amazonaws.com"}


def _cleaner(synth: Synth) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    backup = synth.raw("backup")
    [(_, function)] = [
        (lid, f)
        for lid, f in resources(backup, "AWS::Lambda::Function")
        if lid.startswith("VaultCleanerFunction")
    ]
    [(_, policy)] = [
        (lid, p)
        for lid, p in resources(backup, "AWS::IAM::ManagedPolicy")
        if lid.startswith("VaultCleanerRole")
    ]
    [(_, custom)] = resources(backup, "Custom::BackupVaultCleaner")
    return function, policy, custom


def test_vault_cleaner_runs_in_the_vpc_with_its_own_log_group(synth: Synth) -> None:
    function, _, custom = _cleaner(synth)
    props = function["Properties"]
    assert props["FunctionName"] == f"backup-vault-cleaner-{TEST_SUFFIX}"
    assert props["Handler"] == "govdr.backup.runtime.handler.handler"
    assert props["Runtime"].startswith("python3.")
    assert props["Timeout"] == 840  # under the framework's 900 s, which answers even its timeout
    assert len(props["VpcConfig"]["SubnetIds"]) == 3
    assert "OpsSecurityGroup" in json.dumps(props["VpcConfig"]["SecurityGroupIds"])
    assert "VaultCleanerLogGroup" in json.dumps(props["LoggingConfig"])
    assert "Vault" in json.dumps(custom["Properties"]["BackupVaultName"])


@pytest.mark.control("AC-6")
def test_vault_cleaner_permissions_are_scoped(synth: Synth) -> None:
    _, policy, _ = _cleaner(synth)
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert set(statements) == {
        "ListAndDeleteRecoveryPoints",
        "DeleteBackupSnapshotsOfRds",
        "StopBackupJobs",
        "ReadOwnStackStatus",
        "VpcNetworkInterfaces",
        "WriteOwnLogs",
    }
    recovery = statements["ListAndDeleteRecoveryPoints"]
    assert "Vault" in json.dumps(recovery["Resource"])
    assert "recovery-point:*" in json.dumps(recovery["Resource"])
    assert "snapshot:awsbackup:*" in json.dumps(statements["DeleteBackupSnapshotsOfRds"])
    assert "VaultCleanerLogGroup" in json.dumps(statements["WriteOwnLogs"]["Resource"])
    for statement in statements.values():
        assert "*" not in json.dumps(statement["Action"])


def test_plan_is_deleted_before_the_vault_is_emptied(synth: Synth) -> None:
    backup = synth.raw("backup")
    [(_plan_id, plan)] = resources(backup, "AWS::Backup::BackupPlan")
    [(custom_id, _)] = resources(backup, "Custom::BackupVaultCleaner")
    assert custom_id in plan.get("DependsOn", [])


ACCOUNT = "123456789012"
PSEUDO = {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": "eu-central-2"}


def _resolve(value: Any) -> Any:
    """Pseudo parameters and Fn::Join to plain strings (the policy as IAM evaluates it)."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in PSEUDO:
        return PSEUDO[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        sep, parts = value["Fn::Join"]
        return sep.join(str(_resolve(p)) for p in parts)
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


def _vault_policy(template: dict[str, Any]) -> dict[str, Any]:
    [(_, vault)] = resources(template, "AWS::Backup::BackupVault")
    return dict(_resolve(vault["Properties"]["AccessPolicy"]))


def _delete_by(policy: dict[str, Any], role_arn: str) -> Any:
    from govdr.compliance.policy_eval import Request, evaluate

    point = f"arn:aws:backup:eu-central-2:{ACCOUNT}:recovery-point:continuous:db-1"
    return evaluate(
        policy,
        Request(
            "AWS", role_arn, "backup:DeleteRecoveryPoint", point, {"aws:PrincipalArn": role_arn}
        ),
    )


def test_item_7_vault_policy_lets_only_the_cleaner_delete_recovery_points(synth: Synth) -> None:
    """Item 7: the vault had no access policy, so any principal with backup:DeleteRecoveryPoint
    (the cleaner's role allowed it on every vault) could empty it. Now the vault denies
    DeleteRecoveryPoint to everyone but this environment's cleaner role; the failing twin
    shows a policy naming another role denies the cleaner."""
    policy = _vault_policy(synth.raw("backup"))
    cleaner = f"arn:aws:iam::{ACCOUNT}:role/backup-vault-cleaner-role-{TEST_SUFFIX}"
    [(_, role)] = [
        (lid, r)
        for lid, r in resources(synth.raw("backup"), "AWS::IAM::Role")
        if r["Properties"].get("RoleName") == f"backup-vault-cleaner-role-{TEST_SUFFIX}"
    ]
    assert "Path" not in role["Properties"]  # the ARN the condition names is role/<name>
    for other in (
        f"arn:aws:iam::{ACCOUNT}:role/admin",
        f"arn:aws:iam::{ACCOUNT}:root",
        f"arn:aws:iam::{ACCOUNT}:role/backup-vault-cleaner-role-prod",
    ):
        decision = _delete_by(policy, other)
        assert (
            decision.reason == "explicitly denied by statement OnlyTheCleanerDeletesRecoveryPoints"
        )
    # The cleaner is not denied: its own identity policy then decides.
    assert _delete_by(policy, cleaner).reason == "no statement allows it"
    [statement] = policy["Statement"]
    assert statement["Action"] == "backup:DeleteRecoveryPoint"  # the policy itself stays editable

    twin = copy.deepcopy(policy)
    twin["Statement"][0]["Condition"]["StringNotEquals"]["aws:PrincipalArn"] = (
        f"arn:aws:iam::{ACCOUNT}:role/someone-else"
    )
    assert _delete_by(twin, cleaner).reason == (
        "explicitly denied by statement OnlyTheCleanerDeletesRecoveryPoints"
    )


def test_item_7_prod_synth_has_no_cleaner_and_denies_every_deletion(prod_synth: Synth) -> None:
    """Item 7: the cleaner existed with the prod switch on, so deleting a production stack
    emptied its retained vault. The prod synthesis has no cleaner function, role or custom
    resource, and its vault denies DeleteRecoveryPoint to every principal; the failing twin
    (the default synthesis) has the cleaner."""
    backup = prod_synth.raw("backup")
    assert list(resources(backup, "Custom::BackupVaultCleaner")) == []
    names = [
        r["Properties"].get("FunctionName") for _, r in resources(backup, "AWS::Lambda::Function")
    ]
    assert not [n for n in names if "vault-cleaner" in str(n)]
    policy = _vault_policy(backup)
    assert "Condition" not in policy["Statement"][0]
    cleaner = f"arn:aws:iam::{ACCOUNT}:role/backup-vault-cleaner-role-prod"
    assert _delete_by(policy, cleaner).reason.startswith("explicitly denied")


def test_item_7_twin_default_synth_has_the_cleaner(synth: Synth) -> None:
    """Item 7 twin: without the prod switch the cleaner is built (the prod test's difference)."""
    assert len(list(resources(synth.raw("backup"), "Custom::BackupVaultCleaner"))) == 1


def test_item_7_cleaner_knows_its_vault_and_reads_only_its_own_stack(synth: Synth) -> None:
    """Item 7: the cleaner had no notion of its own vault or stack. Its environment names the
    vault the stack creates, and DescribeStacks is allowed on its own stack only."""
    function, policy, _ = _cleaner(synth)
    [(_, vault)] = resources(synth.raw("backup"), "AWS::Backup::BackupVault")
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["BACKUP_VAULT_NAME"] == vault["Properties"]["BackupVaultName"]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    read = statements["ReadOwnStackStatus"]
    assert (read["Action"], read["Resource"]) == (
        "cloudformation:DescribeStacks",
        {"Ref": "AWS::StackId"},
    )


def test_item_12_bootstrap_is_told_its_own_slot_and_secrets(synth: Synth) -> None:
    """Item 12: the bootstrap trusted the event's SlotName and secret ARNs. The stack gives
    the function the values it configured on the custom resource, which the handler compares."""
    database = synth.raw("database")
    [(_, function)] = [
        (lid, f)
        for lid, f in resources(database, "AWS::Lambda::Function")
        if lid.startswith("TxlogBootstrapFunction")
    ]
    [(_, custom)] = resources(database, "Custom::TxlogBootstrap")
    variables = function["Properties"]["Environment"]["Variables"]
    props = custom["Properties"]
    assert variables["TXLOG_SLOT_NAME"] == props["SlotName"] == f"govdr_txlog_{TEST_SUFFIX}"
    assert variables["MASTER_SECRET_ARN"] == props["MasterSecretArn"]
    assert variables["REPLICATION_SECRET_ARN"] == props["ReplicationSecretArn"]
