"""The emulator's fixes, each proven in-process on the real synthesized templates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from govdr_emulator import deploy
from govdr_emulator.fixes import install
from tests.conftest import TEST_SUFFIX, Synth

# Fix name -> the test below that proves it.
PROVEN_BY = {
    "kms-key-properties": "test_kms_key_policy_and_tags_read_back",
    "failed-create-reporting": "test_failed_create_names_the_failing_resource",
    "nested-stack-outputs": "test_root_outputs_resolve_through_nested_stacks",
    "missing-resource-types": "test_skipped_types_are_created_on_their_backends",
    "backup-selections-api": "test_backup_selections_are_listed",
    "rds-parameter-group-ref": "test_database_properties_read_back",
    "rds-instance-properties": "test_database_properties_read_back",
    "rds-parameter-group-name": "test_database_properties_read_back",
    "rds-instance-resource-id": "test_drill_connect_policy_names_the_instance_resource_id",
    "efs-file-system-policy": "test_file_system_policy_and_access_point_read_back",
    "efs-access-point-ref": "test_file_system_policy_and_access_point_read_back",
    "efs-file-system-attributes": "test_file_system_policy_and_access_point_read_back",
    "ec2-network-teardown": "test_teardown_leaves_nothing_behind",
    "iam-managed-policy-teardown": "test_teardown_leaves_nothing_behind",
    "change-set-outputs": "test_change_set_execution_keeps_the_outputs",
    "ec2-region-opt-in": "test_preflight_against_the_emulator_fails_nothing",
    "ec2-endpoint-service-filters": "test_preflight_against_the_emulator_fails_nothing",
    "rds-orderable-options-unknown": "test_preflight_against_the_emulator_fails_nothing",
}


def test_every_fix_is_documented_and_proven() -> None:
    fixes = install()
    assert install() == fixes  # idempotent
    assert {f.name for f in fixes} == set(PROVEN_BY)
    for fix in fixes:
        assert len(fix.gap) > 40
    source = Path(__file__).read_text()
    for test in set(PROVEN_BY.values()):
        assert f"def {test}(" in source


def _deployed(synth: Synth) -> Iterator[tuple[deploy.Aws, dict[str, str]]]:
    install()
    with mock_aws():
        aws = deploy.Aws(None)
        url = deploy.publish_assets(aws, synth.outdir, synth.config.stack_name)
        deploy.create_stack(aws, url, synth.config.stack_name)
        outputs = {
            o["OutputKey"]: o["OutputValue"]
            for o in aws.client("cloudformation").describe_stacks(
                StackName=synth.config.stack_name
            )["Stacks"][0]["Outputs"]
        }
        yield aws, outputs


@pytest.fixture(scope="module")
def stack(synth: Synth) -> Iterator[tuple[deploy.Aws, dict[str, str]]]:
    """One in-process deployment shared by the read-only tests of this module."""
    yield from _deployed(synth)


def test_root_outputs_resolve_through_nested_stacks(
    stack: tuple[deploy.Aws, dict[str, str]], synth: Synth
) -> None:
    aws, outputs = stack
    assert len(outputs) == len(synth.raw()["Outputs"])
    assert outputs["VpcId"].startswith("vpc-")
    assert outputs["DatabaseInstanceIdentifier"] == f"rds-{TEST_SUFFIX}"
    resources = deploy.stack_resources(aws, synth.config.stack_name)
    assert len(resources) == sum(len(t["Resources"]) for t in synth.all_raw().values())


def test_kms_key_policy_and_tags_read_back(stack: tuple[deploy.Aws, dict[str, str]]) -> None:
    aws, outputs = stack
    kms = aws.client("kms")
    policy = json.loads(
        kms.get_key_policy(KeyId=outputs["DatabaseKeyArn"], PolicyName="default")["Policy"]
    )
    assert {s.get("Sid") for s in policy["Statement"]} >= {"KeyAdministration"}
    tags = {
        t["TagKey"]: t["TagValue"]
        for t in kms.list_resource_tags(KeyId=outputs["DatabaseKeyArn"])["Tags"]
    }
    assert tags["Project"] == "govdr"


def test_database_properties_read_back(stack: tuple[deploy.Aws, dict[str, str]]) -> None:
    aws, outputs = stack
    [db] = aws.client("rds").describe_db_instances(
        DBInstanceIdentifier=outputs["DatabaseInstanceIdentifier"]
    )["DBInstances"]
    assert db["Endpoint"]["Port"] == 5432
    assert db["DBParameterGroups"][0]["DBParameterGroupName"] == f"rds-params-{TEST_SUFFIX}"
    assert db["VpcSecurityGroups"][0]["VpcSecurityGroupId"] == outputs["DatabaseSecurityGroupId"]
    assert db["DeletionProtection"] is False
    assert db["EnabledCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    assert db["IAMDatabaseAuthenticationEnabled"] is True
    assert db["CACertificateIdentifier"] == "rds-ca-rsa2048-g1"


def test_drill_connect_policy_names_the_instance_resource_id(
    stack: tuple[deploy.Aws, dict[str, str]],
) -> None:
    aws, outputs = stack
    [db] = aws.client("rds").describe_db_instances(
        DBInstanceIdentifier=outputs["DatabaseInstanceIdentifier"]
    )["DBInstances"]
    iam = aws.client("iam")
    arn = outputs["DrillConnectPolicyArn"]
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
    statements = document["Document"]
    if isinstance(statements, str):
        statements = json.loads(statements)
    [statement] = statements["Statement"]
    assert statement["Action"] == "rds-db:connect"
    assert statement["Resource"] == (
        f"arn:aws:rds-db:eu-central-2:123456789012:dbuser:{db['DbiResourceId']}/govdr_drill"
    )
    assert db["DbiResourceId"].startswith("db-")


def test_skipped_types_are_created_on_their_backends(
    stack: tuple[deploy.Aws, dict[str, str]],
) -> None:
    aws, outputs = stack
    secret = aws.client("secretsmanager").describe_secret(SecretId=outputs["DatabaseSecretArn"])
    assert secret["RotationEnabled"] is True
    assert secret["RotationRules"]["AutomaticallyAfterDays"] == 30
    policy = aws.client("secretsmanager").get_resource_policy(SecretId=outputs["DatabaseSecretArn"])
    assert "secretsmanager:DeleteSecret" in policy["ResourcePolicy"]
    assert len(aws.client("cloudwatch").describe_alarms()["MetricAlarms"]) == 14
    replication = aws.client("secretsmanager").describe_secret(
        SecretId=outputs["ReplicationSecretArn"]
    )
    assert replication["RotationRules"]["AutomaticallyAfterDays"] == 30
    assert replication["KmsKeyId"] == outputs["SecretsKeyArn"]
    invoke = aws.client("lambda").get_function_event_invoke_config(
        FunctionName=outputs["TxlogArchiverFunctionName"]
    )
    assert invoke["MaximumRetryAttempts"] == 0
    assert invoke["MaximumEventAgeInSeconds"] == 60
    physical = {
        r["type"]: r["physical_id"]
        for r in deploy.stack_resources(aws, f"TapStack{TEST_SUFFIX}")
        if r["type"] in ("Custom::TxlogBootstrap", "AWS::FIS::ExperimentTemplate")
    }
    # The bootstrap read the replication secret (its user names the resource).
    assert physical["Custom::TxlogBootstrap"] == "txlog-bootstrap:govdr_txlog"
    assert physical["AWS::FIS::ExperimentTemplate"] == outputs["FailoverDrillTemplateId"]
    topic = aws.client("sns").get_topic_attributes(TopicArn=outputs["AlarmTopicArn"])
    assert "aws:SecureTransport" in topic["Attributes"]["Policy"]
    bucket_policy = aws.client("s3").get_bucket_policy(Bucket=outputs["TrailBucketName"])
    assert "aws:SecureTransport" in bucket_policy["Policy"]
    [sub] = aws.client("rds").describe_event_subscriptions()["EventSubscriptionsList"]
    assert "failover" in sub["EventCategoriesList"]
    assert aws.client("cloudtrail").get_trail_status(Name=outputs["TrailArn"])["IsLogging"]
    egress = aws.client("ec2").describe_security_groups(GroupIds=[outputs["TxlogSecurityGroupId"]])[
        "SecurityGroups"
    ][0]["IpPermissionsEgress"]
    assert {(p.get("FromPort"), p.get("ToPort")) for p in egress} >= {(5432, 5432), (2049, 2049)}
    vault = aws.client("backup").describe_backup_vault(BackupVaultName=outputs["BackupVaultName"])
    assert vault["EncryptionKeyArn"] == outputs["BackupKeyArn"]


def test_backup_selections_are_listed(stack: tuple[deploy.Aws, dict[str, str]]) -> None:
    aws, outputs = stack
    backup = aws.client("backup")
    listed = backup.list_backup_selections(BackupPlanId=outputs["BackupPlanId"])[
        "BackupSelectionsList"
    ]
    names = sorted(s["SelectionName"] for s in listed)
    assert names == [f"backup-efs-{TEST_SUFFIX}", f"backup-rds-{TEST_SUFFIX}"]
    created = backup.create_backup_selection(
        BackupPlanId=outputs["BackupPlanId"],
        BackupSelection={
            "SelectionName": "extra",
            "IamRoleArn": "arn:aws:iam::123456789012:role/x",
        },
    )
    got = backup.get_backup_selection(
        BackupPlanId=outputs["BackupPlanId"], SelectionId=created["SelectionId"]
    )
    assert got["BackupSelection"]["SelectionName"] == "extra"


def test_file_system_policy_and_access_point_read_back(
    stack: tuple[deploy.Aws, dict[str, str]],
) -> None:
    aws, outputs = stack
    efs = aws.client("efs")
    policy = json.loads(
        efs.describe_file_system_policy(FileSystemId=outputs["FileSystemId"])["Policy"]
    )
    assert any(s["Effect"] == "Deny" for s in policy["Statement"])
    [ap] = efs.describe_access_points(AccessPointId=outputs["TxlogAccessPointId"])["AccessPoints"]
    assert ap["RootDirectory"]["Path"] == "/txlog"
    # The archiver may mount the file system only through the access point (Fn::GetAtt Arn).
    iam = aws.client("iam")
    policy_arn = next(
        p["Arn"]
        for p in iam.list_policies(Scope="Local")["Policies"]
        if p["PolicyName"] == f"txlog-archiver-policy-{TEST_SUFFIX}"
    )
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]
    [mount] = [s for s in document["Document"]["Statement"] if s["Sid"] == "MountTxlogAccessPoint"]
    file_system = efs.describe_file_systems(FileSystemId=outputs["FileSystemId"])
    assert mount["Resource"] == file_system["FileSystems"][0]["FileSystemArn"]
    assert (
        mount["Condition"]["ArnEquals"]["elasticfilesystem:AccessPointArn"] == ap["AccessPointArn"]
    )


# What the emulator answers for each preflight check: PASS where it models the fact, UNKNOWN
# where it does not implement the call (never a FAIL it could not know).
EMULATOR_PREFLIGHT = {
    "region-enabled": "PASS",  # ec2-region-opt-in
    "cdk-bootstrap": "PASS",
    "lambda-concurrency": "UNKNOWN",
    "engine-version": "UNKNOWN",
    "instance-class": "UNKNOWN",  # rds-orderable-options-unknown
    "endpoint-services": "PASS",  # ec2-endpoint-service-filters
    "parameter-values": "UNKNOWN",
    "output-plugins": "UNKNOWN",
    "cloudtrail": "PASS",
    "backup-opt-in": "UNKNOWN",
    "deploy-permissions": "UNKNOWN",
}


def test_preflight_against_the_emulator_fails_nothing(
    synth: Synth, capsys: pytest.CaptureFixture[str]
) -> None:
    install()
    seconds: dict[str, float] = {}
    with mock_aws():
        aws = deploy.Aws(None)
        url = deploy.preflight_and_publish(aws, synth.outdir, synth.config.stack_name, seconds)
    report = capsys.readouterr().out
    assert url.endswith(".json")
    assert {"preflight", "publish assets"} <= set(seconds)
    lines = {
        line.split()[1]: line.split()[0] for line in report.splitlines()[1:-1] if line[0] != " "
    }
    assert lines == EMULATOR_PREFLIGHT
    assert "endpoint-services   10 services offered in eu-central-2a, eu-central-2b" in report
    assert report.splitlines()[-1].startswith("verdict: PASS (4 PASS, 0 FAIL, 7 UNKNOWN")


def test_preflight_failure_stops_deploy_local_before_publishing(
    synth: Synth, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five trails in the region: the stack's own trail would exceed the quota."""
    install()
    with mock_aws():
        aws = deploy.Aws(None)
        s3, cloudtrail = aws.client("s3"), aws.client("cloudtrail")
        present = len(cloudtrail.describe_trails(includeShadowTrails=True)["trailList"])
        for n in range(5 - present):
            s3.create_bucket(
                Bucket=f"other-trail-{n}",
                CreateBucketConfiguration={"LocationConstraint": "eu-central-2"},
            )
            cloudtrail.create_trail(Name=f"other-{n}", S3BucketName=f"other-trail-{n}")
        seconds: dict[str, float] = {}
        with pytest.raises(deploy.DeployError, match="preflight failed: fix the FAIL lines"):
            deploy.preflight_and_publish(aws, synth.outdir, synth.config.stack_name, seconds)
        for n in range(5 - present):
            cloudtrail.delete_trail(Name=f"other-{n}")
    assert list(seconds) == ["preflight"]  # stopped before publishing anything
    assert "FAIL    cloudtrail          5 of 5 trails in eu-central-2" in capsys.readouterr().out


BROKEN = {
    "Resources": {
        "Fine": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "fine"}},
        "Broken": {
            "Type": "AWS::RDS::DBInstance",
            "Properties": {"Engine": "not-an-engine", "DBInstanceClass": "db.m7g.large"},
        },
    },
    # An output naming the failed resource: describing the stack must not re-create it.
    "Outputs": {"Endpoint": {"Value": {"Fn::GetAtt": ["Broken", "Endpoint.Address"]}}},
}


def test_failed_create_names_the_failing_resource() -> None:
    install()
    with mock_aws():
        aws = deploy.Aws(None)
        aws.client("s3").create_bucket(
            Bucket="govdr-templates",
            CreateBucketConfiguration={"LocationConstraint": "eu-central-2"},
        )
        aws.client("s3").put_object(
            Bucket="govdr-templates", Key="broken.json", Body=json.dumps(BROKEN)
        )
        with pytest.raises(deploy.DeployError) as excinfo:
            deploy.create_stack(
                aws, "https://s3.eu-central-2.amazonaws.com/govdr-templates/broken.json", "Broken"
            )
        [stack] = aws.client("cloudformation").describe_stacks(StackName="Broken")["Stacks"]
    assert stack["StackStatus"] == "CREATE_FAILED"
    assert "Outputs" not in stack or stack["Outputs"] == []
    message = str(excinfo.value)
    assert "stack Broken is CREATE_FAILED" in message
    assert "Broken (AWS::RDS::DBInstance)" in message
    assert "not-an-engine" in message


def test_change_set_execution_keeps_the_outputs() -> None:
    install()
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "cs"}}},
        "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}}},
    }
    with mock_aws():
        cfn = deploy.Aws(None).client("cloudformation")
        cfn.create_change_set(
            StackName="ChangeSetStack",
            ChangeSetName="first",
            ChangeSetType="CREATE",
            TemplateBody=json.dumps(template),
        )
        cfn.execute_change_set(ChangeSetName="first", StackName="ChangeSetStack")
        [stack] = cfn.describe_stacks(StackName="ChangeSetStack")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert stack["Outputs"][0]["OutputValue"].endswith(":cs")


def test_publish_without_a_synth_is_a_clear_error(tmp_path: Any) -> None:
    with mock_aws(), pytest.raises(deploy.DeployError, match="synthesize TapStackdev first"):
        deploy.publish_assets(deploy.Aws(None), tmp_path, "TapStackdev")


def test_teardown_leaves_nothing_behind(
    stack: tuple[deploy.Aws, dict[str, str]], synth: Synth
) -> None:
    # Deletes the module's shared deployment, so it is the last test of this module.
    aws, outputs = stack
    before = deploy.leftovers(aws, TEST_SUFFIX)
    assert {"vpcs", "iam policies", "vpc endpoints", "log groups", "alarms"} <= set(before)
    assert deploy.teardown(aws, synth.config.stack_name, TEST_SUFFIX) == {}
    key = aws.client("kms").describe_key(KeyId=outputs["DatabaseKeyArn"])["KeyMetadata"]
    # As on AWS: the key waits out its 7-day pending window.
    assert key["KeyState"] == "PendingDeletion"
    assert 6 <= (key["DeletionDate"] - key["CreationDate"]).days <= 7


def test_fis_template_model_rejects_a_template_without_stop_conditions() -> None:
    from govdr_emulator.models import ExperimentTemplate

    props = {
        "RoleArn": "arn:aws:iam::123456789012:role/fis",
        "Actions": {"A": {"ActionId": "aws:rds:reboot-db-instances"}},
        "Targets": {"T": {"ResourceType": "aws:rds:db"}},
        "StopConditions": [{"Source": "aws:cloudwatch:alarm", "Value": "arn:alarm"}],
    }
    created = ExperimentTemplate.create(props, "FailoverDrill", "123456789012", "eu-central-2")
    assert created.physical_resource_id.startswith("EXT")
    with pytest.raises(ValueError, match="needs StopConditions"):
        ExperimentTemplate.create(
            {**props, "StopConditions": []}, "FailoverDrill", "123456789012", "eu-central-2"
        )
