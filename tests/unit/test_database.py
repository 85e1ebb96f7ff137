"""Database: Multi-AZ PostgreSQL, CMK encryption, TLS only, PITR, rotated credentials."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from govdr.compliance.finding import texts
from govdr.compliance.rules.database_tls import database_tls_findings
from govdr.compliance.rules.drill_connect import drill_connect_findings
from govdr.compliance.rules.pgaudit import pgaudit_findings
from govdr.compliance.rules.slot_wal_cap import slot_wal_cap_findings
from govdr.compliance.templates import resources
from tests.conftest import TEST_SUFFIX, Synth


def _secret(database: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    [found] = [
        (lid, secret)
        for lid, secret in resources(database, "AWS::SecretsManager::Secret")
        if secret["Properties"]["Name"] == f"{name}-{TEST_SUFFIX}"
    ]
    return found


def _schedule(database: dict[str, Any], function_name: str) -> dict[str, Any]:
    """The rotation schedule whose function is ``<function_name>-<suffix>``."""
    [function_id] = [
        lid
        for lid, f in resources(database, "AWS::Lambda::Function")
        if f["Properties"]["FunctionName"] == f"{function_name}-{TEST_SUFFIX}"
    ]
    [found] = [
        schedule
        for _, schedule in resources(database, "AWS::SecretsManager::RotationSchedule")
        if schedule["Properties"]["RotationLambdaARN"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ]
    return found


def _param(name: str) -> dict[str, object]:
    """Match a nested-stack parameter that carries a sibling stack's output."""
    return {"Ref": Match.string_like_regexp(name)}


@pytest.mark.control("CP-10", "SC-28")
def test_instance_is_multi_az_encrypted_private_gp3(synth: Synth) -> None:
    synth.nested("database").has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "DBInstanceIdentifier": f"rds-{TEST_SUFFIX}",
            "Engine": "postgres",
            "EngineVersion": "18",
            "DBInstanceClass": "db.m7g.large",
            "MultiAZ": True,
            "StorageEncrypted": True,
            "KmsKeyId": _param("DatabaseKey"),
            "StorageType": "gp3",
            "AllocatedStorage": "100",
            "MaxAllocatedStorage": 500,
            "PubliclyAccessible": False,
            "Port": "5432",
            "VPCSecurityGroups": [_param("DatabaseSecurityGroup")],
            "CACertificateIdentifier": "rds-ca-rsa2048-g1",
        },
    )


def test_observability_and_iam_auth(synth: Synth) -> None:
    synth.nested("database").has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "EnablePerformanceInsights": True,
            "PerformanceInsightsKMSKeyId": _param("DatabaseKey"),
            "DatabaseInsightsMode": "standard",
            "MonitoringInterval": 60,
            "MonitoringRoleArn": {
                "Fn::GetAtt": [Match.string_like_regexp("MonitoringRole"), "Arn"]
            },
            "EnableIAMDatabaseAuthentication": True,
        },
    )
    synth.nested("database").has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": f"rds-monitoring-role-{TEST_SUFFIX}",
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like({"Principal": {"Service": "monitoring.rds.amazonaws.com"}})
                ]
            },
        },
    )


def test_backups_pitr_and_maintenance(synth: Synth) -> None:
    synth.nested("database").has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "BackupRetentionPeriod": 14,
            "CopyTagsToSnapshot": True,
            "AutoMinorVersionUpgrade": True,
            "AllowMajorVersionUpgrade": False,
            "PreferredBackupWindow": Match.any_value(),
            "PreferredMaintenanceWindow": Match.any_value(),
        },
    )


def test_instance_in_database_subnets(synth: Synth) -> None:
    database = synth.raw("database")
    [(_, group)] = resources(database, "AWS::RDS::DBSubnetGroup")
    assert group["Properties"]["DBSubnetGroupName"] == f"rds-subnets-{TEST_SUFFIX}"
    subnet_refs = [r["Ref"] for r in group["Properties"]["SubnetIds"]]
    assert len(subnet_refs) == 3
    assert all("DatabaseSubnet" in ref for ref in subnet_refs)


def test_parameter_group_forces_tls_and_logical_replication(synth: Synth) -> None:
    synth.nested("database").has_resource_properties(
        "AWS::RDS::DBParameterGroup",
        {
            "DBParameterGroupName": f"rds-params-{TEST_SUFFIX}",
            "Family": "postgres18",
            "Parameters": {
                "rds.force_ssl": "1",
                "rds.logical_replication": "1",
                "ssl_min_protocol_version": "TLSv1.2",
            },
        },
    )


@pytest.mark.control("SC-8")
def test_database_tls_check_and_its_failing_twins(synth: Synth) -> None:
    database = synth.raw("database")
    assert texts(database_tls_findings(database)) == []

    no_force = copy.deepcopy(database)
    [(group_id, group)] = resources(no_force, "AWS::RDS::DBParameterGroup")
    del group["Properties"]["Parameters"]["rds.force_ssl"]
    [(instance_id, _)] = resources(no_force, "AWS::RDS::DBInstance")
    assert texts(database_tls_findings(no_force)) == [
        f"{group_id}: parameter group does not set rds.force_ssl=1",
        f"{instance_id}: instance does not use a parameter group that sets rds.force_ssl=1",
    ]

    default_group = copy.deepcopy(database)
    default_group["Resources"][instance_id]["Properties"]["DBParameterGroupName"] = (
        "default.postgres18"
    )
    assert texts(database_tls_findings(default_group)) == [
        f"{instance_id}: instance does not use a parameter group that sets rds.force_ssl=1"
    ]


def test_master_secret_is_generated_under_the_cmk(synth: Synth) -> None:
    database = synth.raw("database")
    secret_id, secret = _secret(database, "rds-master-secret")
    props = secret["Properties"]
    assert "SecretsKey" in props["KmsKeyId"]["Ref"]
    assert props["GenerateSecretString"]["GenerateStringKey"] == "password"
    assert props["GenerateSecretString"]["PasswordLength"] >= 30
    assert "SecretString" not in props
    # The instance takes its credentials from the secret by dynamic reference only.
    [(_, instance)] = resources(database, "AWS::RDS::DBInstance")
    password = json.dumps(instance["Properties"]["MasterUserPassword"])
    assert "{{resolve:secretsmanager:" in password
    assert secret_id in password


@pytest.mark.control("IA-5(1)")
def test_fault_7_rotation_every_30_days_by_our_function_in_the_vpc(synth: Synth) -> None:
    """Fault 7: hosted rotation put the AWS::SecretsManager-2024-09-16 transform into this
    template and created a python3.10 function. The schedule now names our function."""
    database = synth.raw("database")
    assert "Transform" not in database
    props = _schedule(database, "rds-rotation")["Properties"]
    assert props["RotationRules"] == {"ScheduleExpression": "rate(30 days)"}
    assert "HostedRotationLambda" not in props
    # Rotation targets the attached secret, which carries host and port.
    master_id, _ = _secret(database, "rds-master-secret")
    [attachment_id] = [
        lid
        for lid, a in resources(database, "AWS::SecretsManager::SecretTargetAttachment")
        if a["Properties"]["SecretId"] == {"Ref": master_id}
    ]
    assert props["SecretId"] == {"Ref": attachment_id}


def test_no_serverless_application_repository(synth: Synth) -> None:
    for template in synth.all_raw().values():
        types = {r["Type"] for r in template.get("Resources", {}).values()}
        assert "AWS::Serverless::Application" not in types
        assert "AWS::Serverless-2016-10-31" not in json.dumps(template.get("Transform", ""))


@pytest.mark.control("AC-6")
def test_secret_read_policy_is_least_privilege(synth: Synth) -> None:
    database = synth.raw("database")
    [(_, policy)] = [
        (lid, p)
        for lid, p in resources(database, "AWS::IAM::ManagedPolicy")
        if p["Properties"]["ManagedPolicyName"] == f"rds-secret-read-{TEST_SUFFIX}"
    ]
    secret_id, _ = _secret(database, "rds-master-secret")
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["ReadDatabaseSecret"]["Action"] == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
    ]
    assert statements["ReadDatabaseSecret"]["Resource"] == {"Ref": secret_id}
    assert statements["DecryptDatabaseSecret"]["Action"] == "kms:Decrypt"
    assert "SecretsKey" in statements["DecryptDatabaseSecret"]["Resource"]["Ref"]
    assert statements["DecryptDatabaseSecret"]["Condition"] == {
        "StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}
    }
    for statement in statements.values():
        assert "*" not in json.dumps(statement["Action"])


def test_no_plaintext_password_in_any_template(synth: Synth) -> None:
    for template in synth.all_raw().values():
        for _, instance in resources(template, "AWS::RDS::DBInstance"):
            assert "{{resolve:secretsmanager:" in json.dumps(
                instance["Properties"]["MasterUserPassword"]
            )
        text = json.dumps(template)
        assert '"SecretString":' not in text


@pytest.mark.control("AU-12")
def test_log_exports_and_pgaudit(synth: Synth) -> None:
    database = synth.raw("database")
    [(_instance_id, instance)] = resources(database, "AWS::RDS::DBInstance")
    assert instance["Properties"]["EnableCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    [(_, group)] = resources(database, "AWS::RDS::DBParameterGroup")
    params = group["Properties"]["Parameters"]
    assert params["shared_preload_libraries"] == "pg_stat_statements,pgaudit"
    assert params["pgaudit.log"] == "ddl,role,write"
    assert params["log_connections"] == "receipt,authentication,authorization"
    assert params["log_disconnections"] == "1"
    assert texts(pgaudit_findings(database)) == []


@pytest.mark.control("AU-2")
def test_pgaudit_check_failing_twins(synth: Synth) -> None:
    database = copy.deepcopy(synth.raw("database"))
    [(gid, group)] = resources(database, "AWS::RDS::DBParameterGroup")
    params = group["Properties"]["Parameters"]
    params["shared_preload_libraries"] = "pg_stat_statements"
    params["pgaudit.log"] = "ddl"
    params["log_connections"] = "receipt"
    assert texts(pgaudit_findings(database)) == [
        f"{gid}: pgaudit is not in shared_preload_libraries",
        f"{gid}: pgaudit.log does not cover role, write",
        f"{gid}: log_connections is 'receipt', PostgreSQL 18 logs connections with "
        "'receipt,authentication,authorization'",
    ]
    params.update(
        {
            "shared_preload_libraries": "pgaudit",
            "pgaudit.log": "all",
            "log_connections": "receipt,authentication,authorization",
        }
    )
    assert texts(pgaudit_findings(database)) == []


@pytest.mark.control("AU-12")
def test_log_groups_exist_before_their_writers(synth: Synth) -> None:
    database = synth.raw("database")
    groups = {
        g["Properties"]["LogGroupName"]: lid
        for lid, g in resources(database, "AWS::Logs::LogGroup")
    }
    [(_, instance)] = resources(database, "AWS::RDS::DBInstance")
    for export in ("postgresql", "upgrade"):
        assert groups[f"/aws/rds/instance/rds-{TEST_SUFFIX}/{export}"] in instance["DependsOn"]
    # The first rotation runs when the schedule is created: the function it invokes writes to
    # its own group, which the function references (so the group is created first).
    for function_name in ("rds-rotation", "rds-txlog-rotation"):
        [function] = [
            f
            for _, f in resources(database, "AWS::Lambda::Function")
            if f["Properties"]["FunctionName"] == f"{function_name}-{TEST_SUFFIX}"
        ]
        group = groups[f"/aws/lambda/{function_name}-{TEST_SUFFIX}"]
        assert function["Properties"]["LoggingConfig"] == {"LogGroup": {"Ref": group}}
        assert _schedule(database, function_name)["Properties"]["RotationLambdaARN"]


def _drill_policy(database: dict[str, Any]) -> dict[str, Any]:
    [policy] = [
        p
        for _, p in resources(database, "AWS::IAM::ManagedPolicy")
        if p["Properties"]["ManagedPolicyName"] == f"rds-drill-connect-{TEST_SUFFIX}"
    ]
    return policy


def test_drill_connect_policy_allows_only_govdr_drill_on_this_instance(synth: Synth) -> None:
    database = synth.raw("database")
    [(instance_id, instance)] = resources(database, "AWS::RDS::DBInstance")
    assert instance["Properties"]["EnableIAMDatabaseAuthentication"] is True
    [statement] = _drill_policy(database)["Properties"]["PolicyDocument"]["Statement"]
    assert statement == {
        "Sid": "ConnectAsDrillUser",
        "Effect": "Allow",
        "Action": "rds-db:connect",
        "Resource": {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":rds-db:",
                    {"Ref": "AWS::Region"},
                    ":",
                    {"Ref": "AWS::AccountId"},
                    ":dbuser:",
                    {"Fn::GetAtt": [instance_id, "DbiResourceId"]},
                    "/govdr_drill",
                ],
            ]
        },
    }
    assert texts(drill_connect_findings(database)) == []
    root = synth.raw()
    assert "DrillConnectPolicyArn" in root["Outputs"]


@pytest.mark.parametrize(
    "mutation",
    ["any-instance", "any-user", "master-user", "iam-auth-off", "extra-star-resource"],
)
def test_drill_connect_check_rejects_a_wider_or_unusable_policy(
    synth: Synth, mutation: str
) -> None:
    """Failing twins of the check above: each mutated template is rejected."""
    database = copy.deepcopy(synth.raw("database"))
    statement = _drill_policy(database)["Properties"]["PolicyDocument"]["Statement"][0]
    parts = statement["Resource"]["Fn::Join"][1]
    if mutation == "any-instance":
        parts[7] = "*"
    elif mutation == "any-user":
        parts[8] = "/*"
    elif mutation == "master-user":
        parts[8] = "/govdr_admin"
    elif mutation == "iam-auth-off":
        [(_, instance)] = resources(database, "AWS::RDS::DBInstance")
        instance["Properties"]["EnableIAMDatabaseAuthentication"] = False
    else:
        statement["Resource"] = [statement["Resource"], "*"]
    [finding] = texts(drill_connect_findings(database))
    assert "DrillConnectPolicy" in finding


def _parameter_group(database: dict[str, Any]) -> dict[str, Any]:
    [(_, group)] = resources(database, "AWS::RDS::DBParameterGroup")
    return group


def _slot_lag_alarm(
    monitoring: dict[str, Any], metric: str = "OldestReplicationSlotLag"
) -> dict[str, Any]:
    [alarm] = [
        a
        for _, a in resources(monitoring, "AWS::CloudWatch::Alarm")
        if a["Properties"]["MetricName"] == metric
    ]
    return alarm


def test_the_slot_keeps_at_most_a_fifth_of_the_storage_and_alarms_at_half_of_that(
    synth: Synth, variant_synth: Synth
) -> None:
    group = _parameter_group(synth.raw("database"))
    assert group["Properties"]["Parameters"]["max_slot_wal_keep_size"] == "20480"
    alarm = _slot_lag_alarm(synth.raw("monitoring"))["Properties"]
    assert alarm["Threshold"] == 1024 * 1024**2
    assert "invalidates it at 20480 MiB (max_slot_wal_keep_size)" in alarm["AlarmDescription"]
    assert texts(slot_wal_cap_findings(synth.all_raw())) == []
    # Another configuration: the parameter and the alarm follow its knobs.
    variant = _parameter_group(variant_synth.raw("database"))["Properties"]["Parameters"]
    assert variant["max_slot_wal_keep_size"] == str(variant_synth.config.slot_wal_keep_limit_mib)
    assert texts(slot_wal_cap_findings(variant_synth.all_raw())) == []


@pytest.mark.parametrize(
    ("mutation", "needle"),
    [
        ("unset", "max_slot_wal_keep_size is None: a replication slot may keep WAL until"),
        ("unlimited", "max_slot_wal_keep_size is '-1'"),
        ("zero", "max_slot_wal_keep_size is '0'"),
        ("late-alarm", "above half of the slot's WAL cap (10737418240 bytes)"),
        ("no-alarm", "no alarm on OldestReplicationSlotLag warns before the slot's cap"),
        ("default-group", "parameter group (RDS default) does not cap max_slot_wal_keep_size"),
        ("falling-alarm", "alarms when 'LessThanThreshold': it must fire as the lag rises"),
        ("other-family", "max_slot_wal_keep_size is None"),
        ("no-logical-alarm", "no alarm on OldestLogicalReplicationSlotLag warns before"),
        ("other-instance", "alarms on 'rds-elsewhere', which is not a capped PostgreSQL instance"),
    ],
)
@pytest.mark.control("SI-4")
def test_the_slot_cap_check_rejects_an_uncapped_slot_or_a_late_alarm(
    synth: Synth, mutation: str, needle: str
) -> None:
    """Failing twins of the check above: each mutated synthesis is rejected."""
    templates = copy.deepcopy(synth.all_raw())
    [database] = [t for t in templates.values() if list(resources(t, "AWS::RDS::DBParameterGroup"))]
    [monitoring] = [
        t
        for t in templates.values()
        if any(
            a["Properties"].get("MetricName") == "OldestReplicationSlotLag"
            for _, a in resources(t, "AWS::CloudWatch::Alarm")
        )
    ]
    parameters = _parameter_group(database)["Properties"]["Parameters"]
    if mutation == "unset":
        del parameters["max_slot_wal_keep_size"]
    elif mutation == "unlimited":
        parameters["max_slot_wal_keep_size"] = "-1"
    elif mutation == "zero":
        parameters["max_slot_wal_keep_size"] = "0"
    elif mutation == "late-alarm":
        _slot_lag_alarm(monitoring)["Properties"]["Threshold"] = 10240 * 1024**2 + 1
    elif mutation == "default-group":
        [(_, instance)] = resources(database, "AWS::RDS::DBInstance")
        del instance["Properties"]["DBParameterGroupName"]
    elif mutation == "falling-alarm":
        _slot_lag_alarm(monitoring)["Properties"]["ComparisonOperator"] = "LessThanThreshold"
    elif mutation == "other-family":
        # a family govdr has no engine table for is still a PostgreSQL group, still checked
        _parameter_group(database)["Properties"]["Family"] = "postgres99"
        del parameters["max_slot_wal_keep_size"]
    elif mutation == "other-instance":
        # an alarm on an instance outside the synthesis watches none of its slots
        _slot_lag_alarm(monitoring)["Properties"]["Dimensions"] = [
            {"Name": "DBInstanceIdentifier", "Value": "rds-elsewhere"}
        ]
    elif mutation == "no-logical-alarm":
        _slot_lag_alarm(monitoring, "OldestLogicalReplicationSlotLag")["Properties"][
            "MetricName"
        ] = "TransactionLogsDiskUsage"
    else:
        _slot_lag_alarm(monitoring)["Properties"]["MetricName"] = "TransactionLogsDiskUsage"
    findings = texts(slot_wal_cap_findings(templates))
    assert findings and all("max_slot_wal_keep_size" in f or "SlotLag" in f for f in findings)
    assert any(needle in finding for finding in findings), findings
