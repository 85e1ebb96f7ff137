"""The deployed platform, read back through the AWS APIs (emulator or real account)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from govdr.compliance.rules.monitoring_coverage import REQUIRED_RDS_EVENT_CATEGORIES
from tests.integration.conftest import Deployment
from tests.unit.test_root import OUTPUTS

KEY_OUTPUTS = sorted(o for o in OUTPUTS if o.endswith("KeyArn"))


def _db(d: Deployment) -> dict[str, Any]:
    [db] = d.aws.client("rds").describe_db_instances(
        DBInstanceIdentifier=d.outputs["DatabaseInstanceIdentifier"]
    )["DBInstances"]
    return dict(db)


def test_names_carry_the_suffix(deployment: Deployment) -> None:
    o, s = deployment.outputs, deployment.suffix
    assert o["DatabaseInstanceIdentifier"] == f"rds-{s}"
    assert o["DashboardName"] == f"dashboard-{s}"
    assert o["BackupVaultName"] == f"backup-vault-{s}"
    assert o["AlarmTopicArn"].endswith(f":alarms-{s}")
    assert o["FlowLogGroupName"] == f"vpc-flow-logs-{s}"
    if "TrailBucketName" in o:  # the environment's own trail; an existing one keeps its name
        assert o["TrailArn"].endswith(f":trail/trail-{s}")


def test_database_is_multi_az_encrypted_private_and_logged(deployment: Deployment) -> None:
    db = _db(deployment)
    o = deployment.outputs
    assert db["MultiAZ"] is True
    assert db["StorageEncrypted"] is True
    assert db["KmsKeyId"] == o["DatabaseKeyArn"]
    assert db["PubliclyAccessible"] is False
    assert db["Engine"] == "postgres"
    assert db["StorageType"] == "gp3"
    assert db["BackupRetentionPeriod"] >= 7
    assert db["DeletionProtection"] is False
    assert db["IAMDatabaseAuthenticationEnabled"] is True
    assert sorted(db["EnabledCloudwatchLogsExports"]) == ["postgresql", "upgrade"]
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == [
        o["DatabaseSecurityGroupId"]
    ]
    assert str(db["Endpoint"]["Port"]) == o["DatabaseEndpointPort"] == "5432"
    assert db["Endpoint"]["Address"] == o["DatabaseEndpointAddress"]
    assert db["MonitoringInterval"] == 60


def test_parameter_group_forces_tls_and_loads_pgaudit(deployment: Deployment) -> None:
    db = _db(deployment)
    [group] = db["DBParameterGroups"]
    assert group["DBParameterGroupName"] == f"rds-params-{deployment.suffix}"
    rds = deployment.aws.client("rds")
    params = {
        p["ParameterName"]: p.get("ParameterValue")
        for page in rds.get_paginator("describe_db_parameters").paginate(
            DBParameterGroupName=group["DBParameterGroupName"], Source="user"
        )
        for p in page["Parameters"]
    }
    assert params["rds.force_ssl"] == "1"
    assert params["rds.logical_replication"] == "1"
    assert "pgaudit" in params["shared_preload_libraries"].split(",")
    assert params["pgaudit.log"] == "ddl,role,write"


@pytest.mark.live_only
def test_performance_insights_encrypted_with_the_database_key(deployment: Deployment) -> None:
    db = _db(deployment)
    assert db["PerformanceInsightsEnabled"] is True
    assert db["PerformanceInsightsKMSKeyId"] == deployment.outputs["DatabaseKeyArn"]


def _encrypted_and_rotating(deployment: Deployment, output: str, name: str) -> dict[str, Any]:
    secret = deployment.aws.client("secretsmanager").describe_secret(
        SecretId=deployment.outputs[output]
    )
    assert secret["Name"] == f"{name}-{deployment.suffix}"
    assert secret["KmsKeyId"] == deployment.outputs["SecretsKeyArn"]
    assert secret["RotationEnabled"] is True
    rules = secret["RotationRules"]
    assert (
        rules.get("ScheduleExpression") == "rate(30 days)"
        or rules.get("AutomaticallyAfterDays") == 30
    )
    return dict(secret)


def test_secret_is_encrypted_and_rotates_every_30_days(deployment: Deployment) -> None:
    secret = _encrypted_and_rotating(deployment, "DatabaseSecretArn", "rds-master-secret")
    assert secret["RotationLambdaARN"].endswith(f":function:rds-rotation-{deployment.suffix}")


def test_secret_carries_the_connection_fields(deployment: Deployment) -> None:
    value = deployment.aws.client("secretsmanager").get_secret_value(
        SecretId=deployment.outputs["DatabaseSecretArn"]
    )
    fields = json.loads(value["SecretString"])
    # Only the field names and non-secret values are asserted; the password is never shown.
    assert {"username", "password", "host", "port", "engine"} <= set(fields)
    assert fields["host"] == deployment.outputs["DatabaseEndpointAddress"]
    assert int(fields["port"]) == 5432
    assert len(fields["password"]) >= 30


def test_file_system_is_encrypted_tls_only_and_in_every_az(deployment: Deployment) -> None:
    efs = deployment.aws.client("efs")
    fs_id = deployment.outputs["FileSystemId"]
    [fs] = efs.describe_file_systems(FileSystemId=fs_id)["FileSystems"]
    assert fs["Encrypted"] is True
    assert fs["KmsKeyId"] == deployment.outputs["FileSystemKeyArn"]
    assert fs["Name"] == f"efs-{deployment.suffix}"
    targets = efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]
    assert sorted(t["AvailabilityZoneName"] for t in targets) == [
        "eu-central-2a",
        "eu-central-2b",
        "eu-central-2c",
    ]
    policy = json.loads(efs.describe_file_system_policy(FileSystemId=fs_id)["Policy"])
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_txlog_access_point(deployment: Deployment) -> None:
    [ap] = deployment.aws.client("efs").describe_access_points(
        AccessPointId=deployment.outputs["TxlogAccessPointId"]
    )["AccessPoints"]
    assert ap["FileSystemId"] == deployment.outputs["FileSystemId"]
    assert ap["PosixUser"]["Uid"] == 5432
    assert ap["RootDirectory"]["Path"] == "/txlog"


def test_every_key_rotates(deployment: Deployment) -> None:
    kms = deployment.aws.client("kms")
    for output in KEY_OUTPUTS:
        key_arn = deployment.outputs[output]
        assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True, output
        metadata = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
        assert metadata["KeyManager"] == "CUSTOMER"
        assert metadata["KeyState"] == "Enabled"


def test_alarms_exist_with_alarm_and_ok_actions(deployment: Deployment) -> None:
    alarms = [
        a
        for a in deployment.aws.client("cloudwatch").describe_alarms()["MetricAlarms"]
        if a["AlarmName"].endswith(f"-{deployment.suffix}")
    ]
    assert len(alarms) == 14
    topic = deployment.outputs["AlarmTopicArn"]
    for alarm in alarms:
        assert alarm["AlarmActions"] == [topic], alarm["AlarmName"]
        assert alarm["OKActions"] == [topic], alarm["AlarmName"]


def test_rds_event_subscription(deployment: Deployment) -> None:
    [sub] = deployment.aws.client("rds").describe_event_subscriptions(
        SubscriptionName=deployment.outputs["RdsEventSubscriptionName"]
    )["EventSubscriptionsList"]
    assert sub["SnsTopicArn"] == deployment.outputs["AlarmTopicArn"]
    assert sub["SourceIdsList"] == [deployment.outputs["DatabaseInstanceIdentifier"]]
    assert set(sub["EventCategoriesList"]) == REQUIRED_RDS_EVENT_CATEGORIES


def test_dashboard_exists(deployment: Deployment) -> None:
    body = deployment.aws.client("cloudwatch").get_dashboard(
        DashboardName=deployment.outputs["DashboardName"]
    )["DashboardBody"]
    assert "CPUUtilization" in body
    assert "OldestReplicationSlotLag" in body


def test_trail_is_logging_validated_and_encrypted(deployment: Deployment) -> None:
    """The trail of TrailArn logs, is multi-region and validates its log files.

    The environment's own trail (outputs with TrailBucketName) is also encrypted with the
    audit key and writes to the trail bucket. With ``existingTrailArn`` (no Audit stack, no
    TrailBucketName) the named trail is checked as it is found: logging, multi-region,
    log-file validation; its bucket and key are its owner's and are not compared."""
    cloudtrail = deployment.aws.client("cloudtrail")
    arn = deployment.outputs["TrailArn"]
    assert cloudtrail.get_trail_status(Name=arn)["IsLogging"] is True
    # "If you do not include shadow trails, organization trails in a member account and Region
    # replication trails will not be returned":
    # https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_DescribeTrails.html
    [trail] = cloudtrail.describe_trails(trailNameList=[arn], includeShadowTrails=True)["trailList"]
    assert trail["TrailARN"] == arn
    assert trail["LogFileValidationEnabled"] is True
    assert trail["IsMultiRegionTrail"] is True
    if "TrailBucketName" not in deployment.outputs:
        return
    assert trail["KmsKeyId"] == deployment.outputs["AuditKeyArn"]
    assert trail["S3BucketName"] == deployment.outputs["TrailBucketName"]


def test_backup_plan_covers_database_and_file_system(deployment: Deployment) -> None:
    backup = deployment.aws.client("backup")
    plan_id = deployment.outputs["BackupPlanId"]
    plan = backup.get_backup_plan(BackupPlanId=plan_id)["BackupPlan"]
    [rule] = plan["Rules"]
    assert rule["TargetBackupVaultName"] == deployment.outputs["BackupVaultName"]
    assert rule["EnableContinuousBackup"] is True
    covered = []
    for item in backup.list_backup_selections(BackupPlanId=plan_id)["BackupSelectionsList"]:
        selection = backup.get_backup_selection(
            BackupPlanId=plan_id, SelectionId=item["SelectionId"]
        )["BackupSelection"]
        covered += selection["Resources"]
    assert any(":rds:" in r and r.endswith(f":db:rds-{deployment.suffix}") for r in covered)
    assert any(deployment.outputs["FileSystemId"] in r for r in covered)
    vault = backup.describe_backup_vault(BackupVaultName=deployment.outputs["BackupVaultName"])
    assert vault["EncryptionKeyArn"] == deployment.outputs["BackupKeyArn"]


def test_network_is_isolated_over_three_azs(deployment: Deployment) -> None:
    ec2 = deployment.aws.client("ec2")
    vpc_filter = [{"Name": "vpc-id", "Values": [deployment.outputs["VpcId"]]}]
    subnets = ec2.describe_subnets(Filters=vpc_filter)["Subnets"]
    assert len(subnets) == 6
    assert {s["AvailabilityZone"] for s in subnets} == {
        "eu-central-2a",
        "eu-central-2b",
        "eu-central-2c",
    }
    assert not any(s["MapPublicIpOnLaunch"] for s in subnets)
    gateways = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [deployment.outputs["VpcId"]]}]
    )["InternetGateways"]
    assert gateways == []
    ids = deployment.outputs["DatabaseSubnetIds"].split(",")
    assert len(ids) == 3


def test_default_security_group_has_no_rules(deployment: Deployment) -> None:
    [group] = deployment.aws.client("ec2").describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [deployment.outputs["VpcId"]]},
            {"Name": "group-name", "Values": ["default"]},
        ]
    )["SecurityGroups"]
    assert group["IpPermissions"] == []
    assert group["IpPermissionsEgress"] == []


def test_database_accepts_postgres_only_from_its_clients(deployment: Deployment) -> None:
    ec2 = deployment.aws.client("ec2")
    [group] = ec2.describe_security_groups(
        GroupIds=[deployment.outputs["DatabaseSecurityGroupId"]]
    )["SecurityGroups"]
    for permission in group["IpPermissions"]:
        assert (permission["FromPort"], permission["ToPort"]) == (5432, 5432)
        assert permission.get("IpRanges", []) == []
    sources = {p["GroupId"] for perm in group["IpPermissions"] for p in perm["UserIdGroupPairs"]}
    assert deployment.outputs["TxlogSecurityGroupId"] in sources
    assert len(sources) == 3  # rotation, the archiver and the replication-user bootstrap


def test_replication_secret_is_encrypted_and_rotates_every_30_days(
    deployment: Deployment,
) -> None:
    secret = _encrypted_and_rotating(deployment, "ReplicationSecretArn", "rds-txlog-secret")
    assert secret["RotationLambdaARN"].endswith(f":function:rds-txlog-rotation-{deployment.suffix}")
    sm = deployment.aws.client("secretsmanager")
    fields = json.loads(
        sm.get_secret_value(SecretId=deployment.outputs["ReplicationSecretArn"])["SecretString"]
    )
    # Only names and non-secret values: its own user (or the rotation's clone), same host.
    assert fields["username"] in ("govdr_txlog", "govdr_txlog_clone")
    assert fields["host"] == deployment.outputs["DatabaseEndpointAddress"]
    assert fields["masterarn"] == deployment.outputs["DatabaseSecretArn"]


@pytest.mark.parametrize(
    ("name", "strategy"),
    [("rds-rotation", "single-user"), ("rds-txlog-rotation", "alternating-users")],
)
def test_rotation_functions_are_ours_on_python_3_14_in_the_vpc(
    deployment: Deployment, name: str, strategy: str
) -> None:
    """Fault 7 of the first-deploy review: no hosted rotation (python3.10, deprecated)."""
    config = deployment.aws.client("lambda").get_function_configuration(
        FunctionName=f"{name}-{deployment.suffix}"
    )
    assert config["Runtime"] == "python3.14"
    assert config["Handler"] == "govdr.credentials.runtime.handler.handler"
    assert config["Environment"]["Variables"]["ROTATION_STRATEGY"] == strategy
    subnets = deployment.outputs["FunctionSubnetIds"].split(",")
    assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(subnets)


def test_archiver_runs_every_minute_alone_in_the_vpc_with_the_archive_mounted(
    deployment: Deployment,
) -> None:
    o = deployment.outputs
    lam = deployment.aws.client("lambda")
    function = lam.get_function(FunctionName=o["TxlogArchiverFunctionName"])
    config = function["Configuration"]
    assert config["FunctionName"] == f"txlog-archiver-{deployment.suffix}"
    assert "Concurrency" not in function  # nothing reserved: the slot admits one reader
    assert config["VpcConfig"]["SecurityGroupIds"] == [o["TxlogSecurityGroupId"]]
    assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(o["FunctionSubnetIds"].split(","))
    env = config["Environment"]["Variables"]
    assert env["SECRET_ARN"] == o["ReplicationSecretArn"]
    assert env["SLOT_NAME"] == o["TxlogSlotName"]
    assert env["ARCHIVE_DIR"] == "/mnt/txlog"
    assert config["Timeout"] == 60
    rules = deployment.aws.client("events").list_rule_names_by_target(
        TargetArn=config["FunctionArn"]
    )
    [rule_name] = rules["RuleNames"]
    rule = deployment.aws.client("events").describe_rule(Name=rule_name)
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["State"] == "ENABLED"


@pytest.mark.live_only
def test_archiver_mounts_the_access_point(deployment: Deployment) -> None:
    config = deployment.aws.client("lambda").get_function_configuration(
        FunctionName=deployment.outputs["TxlogArchiverFunctionName"]
    )
    [mount] = config["FileSystemConfigs"]
    assert mount["Arn"].endswith(f":access-point/{deployment.outputs['TxlogAccessPointId']}")
    assert mount["LocalMountPath"] == "/mnt/txlog"


def test_rpo_monitor_runs_every_minute_and_may_only_describe_the_database(
    deployment: Deployment,
) -> None:
    o = deployment.outputs
    config = deployment.aws.client("lambda").get_function_configuration(
        FunctionName=o["RpoMonitorFunctionName"]
    )
    assert config["Environment"]["Variables"]["DB_INSTANCE_ID"] == o["DatabaseInstanceIdentifier"]
    events = deployment.aws.client("events")
    [rule_name] = events.list_rule_names_by_target(TargetArn=config["FunctionArn"])["RuleNames"]
    assert events.describe_rule(Name=rule_name)["ScheduleExpression"] == "rate(1 minute)"
    [alarm] = deployment.aws.client("cloudwatch").describe_alarms(
        AlarmNames=[f"rpo-{deployment.suffix}"]
    )["MetricAlarms"]
    assert alarm["Namespace"] == "govdr/dr"
    assert alarm["Threshold"] < 3600  # below the RPO objective
    assert alarm["TreatMissingData"] == "breaching"


@pytest.mark.live_only
def test_failover_drill_template_targets_only_the_database(deployment: Deployment) -> None:
    o = deployment.outputs
    template = deployment.aws.client("fis").get_experiment_template(
        id=o["FailoverDrillTemplateId"]
    )["experimentTemplate"]
    [action] = template["actions"].values()
    assert action["actionId"] == "aws:rds:reboot-db-instances"
    assert action["parameters"] == {"forceFailover": "true"}
    [target] = template["targets"].values()
    assert target["resourceArns"][0].endswith(f":db:{o['DatabaseInstanceIdentifier']}")
    [stop] = template["stopConditions"]
    assert stop["source"] == "aws:cloudwatch:alarm"
    assert stop["value"].endswith(f":alarm:rpo-{deployment.suffix}")
