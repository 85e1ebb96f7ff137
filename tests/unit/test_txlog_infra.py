"""The transaction-log archive's infrastructure: archiver Lambda, replication user, bundling."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from govdr.compliance.templates import resources
from govdr.constructs import python_bundle
from tests.conftest import TEST_SUFFIX, Synth


def _function(
    template: dict[str, Any], name: str, suffix: str = TEST_SUFFIX
) -> tuple[str, dict[str, Any]]:
    [found] = [
        (lid, f)
        for lid, f in resources(template, "AWS::Lambda::Function")
        if f["Properties"].get("FunctionName") == f"{name}-{suffix}"
    ]
    return found


def _policy_statements(template: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    [policy] = [
        p["Properties"]
        for _, p in resources(template, "AWS::IAM::ManagedPolicy")
        if p["Properties"]["ManagedPolicyName"] == f"{name}-{TEST_SUFFIX}"
    ]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def test_archiver_runs_alone_in_the_vpc_with_the_access_point_mounted(synth: Synth) -> None:
    storage = synth.raw("storage")
    lid, function = _function(storage, "txlog-archiver")
    props = function["Properties"]
    assert props["Handler"] == "govdr.txlog.runtime.handler.handler"
    assert props["Runtime"] == "python3.14"
    assert props["Architectures"] == ["arm64"]
    assert "ReservedConcurrentExecutions" not in props  # one reader per slot instead
    assert props["Timeout"] == 60
    [mount] = props["FileSystemConfigs"]
    assert mount["LocalMountPath"] == "/mnt/txlog"
    [(ap_id, _)] = resources(storage, "AWS::EFS::AccessPoint")
    assert {"Ref": ap_id} in mount["Arn"]["Fn::Join"][1]
    assert "TxlogSecurityGroup" in json.dumps(props["VpcConfig"]["SecurityGroupIds"])
    assert "FunctionsSubnet" in json.dumps(props["VpcConfig"]["SubnetIds"])
    env = props["Environment"]["Variables"]
    assert env["ARCHIVE_DIR"] == "/mnt/txlog"
    assert env["SLOT_NAME"] == f"govdr_txlog_{TEST_SUFFIX}"
    assert (
        "PGSSLMODE" not in env
    )  # govdr/lambda_support/pg_tls.py verifies (test_db_tls_templates.py)
    assert env["DB_NAME"] == "govdr"  # a logical slot sees one database: the archived one
    assert env["RETENTION_DAYS"] == "14"  # txlogRetentionDays: the backup retention by default
    assert "ReplicationSecret" in json.dumps(env["SECRET_ARN"])
    # Mount targets exist before the function that mounts through them.
    mount_targets = {m for m, _ in resources(storage, "AWS::EFS::MountTarget")}
    assert mount_targets <= set(function["DependsOn"])
    # Every minute, no retries of a tick that found the previous run still going.
    [(_, rule)] = resources(storage, "AWS::Events::Rule")
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [lid, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    [(_, invoke)] = resources(storage, "AWS::Lambda::EventInvokeConfig")
    assert invoke["Properties"]["MaximumRetryAttempts"] == 0
    assert invoke["Properties"]["MaximumEventAgeInSeconds"] == 60


def test_archiver_role_reaches_only_its_secret_access_point_and_log_group(synth: Synth) -> None:
    storage = synth.raw("storage")
    statements = _policy_statements(storage, "txlog-archiver-policy")
    assert set(statements) == {
        "ReadDatabaseSecret",
        "DecryptDatabaseSecret",
        "MountTxlogAccessPoint",
        "VpcNetworkInterfaces",
        "WriteOwnLogs",
        "ArchiveIntegrityKey",
    }
    integrity = statements["ArchiveIntegrityKey"]
    assert sorted(integrity["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "TxlogIntegrityKey" in json.dumps(integrity["Resource"])
    assert integrity["Condition"]["StringEquals"]["kms:EncryptionContext:govdr:txlog:slot"] == (
        f"govdr_txlog_{TEST_SUFFIX}"
    )
    secret = json.dumps(statements["ReadDatabaseSecret"]["Resource"])
    assert "ReplicationSecret" in secret
    assert "MasterSecret" not in secret
    mount = statements["MountTxlogAccessPoint"]
    assert mount["Action"] == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    [(fs_id, _)] = resources(storage, "AWS::EFS::FileSystem")
    assert mount["Resource"] == {"Fn::GetAtt": [fs_id, "Arn"]}
    condition = mount["Condition"]["ArnEquals"]["elasticfilesystem:AccessPointArn"]
    [(ap_id, _)] = resources(storage, "AWS::EFS::AccessPoint")
    assert {"Ref": ap_id} in condition["Fn::Join"][1]
    assert "TxlogArchiverLogGroup" in json.dumps(statements["WriteOwnLogs"]["Resource"])
    for statement in statements.values():
        assert "*" not in json.dumps(statement["Action"])


def test_replication_user_is_bootstrapped_before_its_first_rotation(synth: Synth) -> None:
    database = synth.raw("database")
    [(secret_id, secret)] = [
        (lid, s)
        for lid, s in resources(database, "AWS::SecretsManager::Secret")
        if s["Properties"]["Name"] == f"rds-txlog-secret-{TEST_SUFFIX}"
    ]
    generate = json.dumps(secret["Properties"]["GenerateSecretString"]["SecretStringTemplate"])
    assert '\\"username\\":\\"govdr_txlog\\"' in generate
    assert '\\"masterarn\\":' in generate and "MasterSecret" in generate
    assert "SecretsKey" in secret["Properties"]["KmsKeyId"]["Ref"]

    [(bootstrap_id, bootstrap)] = resources(database, "Custom::TxlogBootstrap")
    props = bootstrap["Properties"]
    assert props["ReplicationSecretArn"] == {"Ref": secret_id}
    assert props["SlotName"] == f"govdr_txlog_{TEST_SUFFIX}"
    assert props["DatabaseName"] == "govdr"
    attachments = {
        lid for lid, _ in resources(database, "AWS::SecretsManager::SecretTargetAttachment")
    }
    assert attachments <= set(bootstrap["DependsOn"])

    rotation_id, rotation = _function(database, "rds-txlog-rotation")
    [schedule] = [
        s
        for _, s in resources(database, "AWS::SecretsManager::RotationSchedule")
        if s["Properties"]["RotationLambdaARN"] == {"Fn::GetAtt": [rotation_id, "Arn"]}
    ]
    assert bootstrap_id in schedule["DependsOn"]
    assert schedule["Properties"]["RotationRules"] == {"ScheduleExpression": "rate(30 days)"}
    assert rotation["Properties"]["Environment"]["Variables"]["ROTATION_STRATEGY"] == (
        "alternating-users"
    )

    _, function = _function(database, "txlog-bootstrap")
    assert function["Properties"]["Handler"] == "govdr.txlog.runtime.bootstrap.handler"
    statements = _policy_statements(database, "txlog-bootstrap-policy")
    assert len(statements["ReadDatabaseSecret"]["Resource"]) == 2


def test_lambda_asset_is_bundled_for_arm64_python_3_14_without_docker(
    synth: Synth, prod_synth: Synth
) -> None:
    storage = synth.raw("storage")
    _, function = _function(storage, "txlog-archiver")
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    bundle = synth.outdir / f"asset.{asset_hash}"
    assert (bundle / "govdr" / "txlog" / "runtime" / "handler.py").is_file()
    assert (bundle / "govdr" / "txlog" / "contract.py").is_file()
    support = bundle / "govdr" / "lambda_support"
    assert (support / "custom_resource.py").is_file()
    # Verified TLS: the shared module and the pinned RDS roots (govdr/lambda_support/pg_tls.py).
    assert (support / "pg_tls.py").is_file()
    assert (support / "rds-ca-eu-central-2.pem").read_bytes() == (
        python_bundle.GOVDR_DIR / "lambda_support" / "rds-ca-eu-central-2.pem"
    ).read_bytes()
    # Only the Lambda code of govdr: no infrastructure, no other capability, no CDK.
    shipped = {p.relative_to(bundle).as_posix() for p in (bundle / "govdr").rglob("*.py")}
    assert shipped == {
        p.relative_to(python_bundle.REPO_ROOT).as_posix()
        for p in python_bundle._source_files(("txlog",))
        if p.suffix == ".py"
    }
    assert not any(p.startswith(("govdr/stacks", "govdr/constructs", "govdr/rpo")) for p in shipped)
    [extension] = (bundle / "psycopg2").glob("_psycopg*.so")
    assert extension.name.endswith("cpython-314-aarch64-linux-gnu.so")
    assert (bundle / "aws_lambda_powertools" / "metrics").is_dir()
    assert not list(bundle.rglob("__pycache__"))
    assert not (bundle / ".complete").exists()
    # The same sources give the same asset: an unchanged function is not redeployed.
    suffix = prod_synth.config.environment_suffix
    _, again = _function(prod_synth.raw("storage"), "txlog-archiver", suffix)
    assert again["Properties"]["Code"]["S3Key"] == function["Properties"]["Code"]["S3Key"]
    # The cleaner logs with Powertools like every function: its bundle carries it.
    _, cleaner = _function(synth.raw("backup"), "backup-vault-cleaner")
    cleaner_bundle = synth.outdir / f"asset.{cleaner['Properties']['Code']['S3Key'][:-4]}"
    assert (cleaner_bundle / "govdr" / "backup" / "runtime" / "handler.py").is_file()
    assert (cleaner_bundle / "aws_lambda_powertools" / "logging").is_dir()


def test_asset_hash_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    shutil.copytree(
        python_bundle.GOVDR_DIR, root / "govdr", ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setattr(python_bundle, "REPO_ROOT", root)
    monkeypatch.setattr(python_bundle, "GOVDR_DIR", root / "govdr")
    pins = root / "govdr" / "lambda_support" / "lambda-requirements.txt"
    before = python_bundle.bundle_hash(("txlog",), pins)
    # The infrastructure is not in the bundle: changing it keeps the asset.
    (root / "govdr" / "stacks" / "storage.py").write_text("# changed\n", encoding="utf-8")
    assert python_bundle.bundle_hash(("txlog",), pins) == before
    (root / "govdr" / "txlog" / "runtime" / "archive.py").write_text("# changed\n")
    after = python_bundle.bundle_hash(("txlog",), pins)
    assert before != after
    pins.write_text("# other pins\n", encoding="utf-8")
    assert python_bundle.bundle_hash(("txlog",), pins) != after


def test_bundling_without_uv_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(python_bundle.BundlingError, match=r"uv, which was not found.*make install"):
        python_bundle.install_dependencies(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_a_runtime_package_must_exist() -> None:
    with pytest.raises(
        python_bundle.BundlingError, match="govdr/nope/runtime is not a Python package"
    ):
        python_bundle.bundled_code("nope")
