"""Monitoring: alarm topic, metric alarms, RDS and EventBridge notifications, dashboard."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.rules.alarm_actions import alarm_action_findings
from govdr.compliance.rules.monitoring_coverage import monitoring_coverage_findings
from govdr.compliance.rules.transport_tls import transport_tls_findings
from govdr.compliance.templates import resources
from govdr.config import DrConfig
from govdr.stacks.monitoring import RDS_EVENT_CATEGORIES, alarm_specs
from tests.conftest import TEST_SUFFIX, VARIANT, Synth

EXPECTED_ALARMS = {
    "txlog-archive-gaps": ("govdr/txlog", "ArchiveGaps", "GreaterThanOrEqualToThreshold", 1),
    # short name: (namespace, metric, comparison, threshold with default config)
    "rds-cpu": ("AWS/RDS", "CPUUtilization", "GreaterThanOrEqualToThreshold", 80),
    "rds-free-storage": ("AWS/RDS", "FreeStorageSpace", "LessThanOrEqualToThreshold", 10 * 1024**3),
    "rds-freeable-memory": (
        "AWS/RDS",
        "FreeableMemory",
        "LessThanOrEqualToThreshold",
        512 * 1024**2,
    ),
    "rds-connections": ("AWS/RDS", "DatabaseConnections", "GreaterThanOrEqualToThreshold", 400),
    "rds-read-latency": ("AWS/RDS", "ReadLatency", "GreaterThanOrEqualToThreshold", 0.02),
    "rds-write-latency": ("AWS/RDS", "WriteLatency", "GreaterThanOrEqualToThreshold", 0.02),
    "rds-disk-queue-depth": ("AWS/RDS", "DiskQueueDepth", "GreaterThanOrEqualToThreshold", 64),
    "rds-txlog-disk-usage": (
        "AWS/RDS",
        "TransactionLogsDiskUsage",
        "GreaterThanOrEqualToThreshold",
        10 * 1024**3,
    ),
    "rds-replication-slot-lag": (
        "AWS/RDS",
        "OldestReplicationSlotLag",
        "GreaterThanOrEqualToThreshold",
        1024**3,
    ),
    "rds-logical-slot-lag": (
        "AWS/RDS",
        "OldestLogicalReplicationSlotLag",
        "GreaterThanOrEqualToThreshold",
        1024**3,
    ),
    "efs-io-limit": ("AWS/EFS", "PercentIOLimit", "GreaterThanOrEqualToThreshold", 90),
    "txlog-archive-lag": ("govdr/txlog", "ArchiveLagSeconds", "GreaterThanOrEqualToThreshold", 300),
    "rpo": ("govdr/dr", "RpoSeconds", "GreaterThanOrEqualToThreshold", 900),
}


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for _, a in resources(template, "AWS::CloudWatch::Alarm")
    }


def _topic_id(template: dict[str, Any]) -> str:
    [(lid, _)] = resources(template, "AWS::SNS::Topic")
    return lid


def test_alarm_topic_is_named_encrypted_and_tls_only(synth: Synth) -> None:
    monitoring = synth.raw("monitoring")
    [(_, topic)] = resources(monitoring, "AWS::SNS::Topic")
    assert topic["Properties"]["TopicName"] == f"alarms-{TEST_SUFFIX}"
    assert "AlarmsKey" in json.dumps(topic["Properties"]["KmsMasterKeyId"])
    assert texts(transport_tls_findings(monitoring)) == []


def test_topic_policy_names_each_publisher(synth: Synth) -> None:
    [(_, policy)] = resources(synth.raw("monitoring"), "AWS::SNS::TopicPolicy")
    allows = {
        s["Principal"]["Service"]: s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    }
    assert set(allows) == {
        "cloudwatch.amazonaws.com",
        "events.rds.amazonaws.com",
        "events.amazonaws.com",
    }
    for statement in allows.values():
        assert statement["Action"] == "sns:Publish"


@pytest.mark.control("SC-8")
def test_topic_tls_check_failing_twin(synth: Synth) -> None:
    monitoring = copy.deepcopy(synth.raw("monitoring"))
    [(_, policy)] = resources(monitoring, "AWS::SNS::TopicPolicy")
    document = policy["Properties"]["PolicyDocument"]
    document["Statement"] = [s for s in document["Statement"] if s["Effect"] != "Deny"]
    topic = _topic_id(monitoring)
    assert texts(transport_tls_findings(monitoring)) == [
        f"{topic}: topic policy does not deny publishing without TLS"
    ]


def test_no_email_subscription_unless_configured(synth: Synth, variant_synth: Synth) -> None:
    assert not list(resources(synth.raw("monitoring"), "AWS::SNS::Subscription"))
    [(_, sub)] = resources(variant_synth.raw("monitoring"), "AWS::SNS::Subscription")
    assert sub["Properties"]["Protocol"] == "email"
    assert sub["Properties"]["Endpoint"] == "dr-operators@example.gov"


@pytest.mark.parametrize("short", sorted(EXPECTED_ALARMS))
@pytest.mark.control("SI-4")
def test_each_alarm_metric_threshold_and_actions(synth: Synth, short: str) -> None:
    monitoring = synth.raw("monitoring")
    alarm = _alarms(monitoring)[f"{short}-{TEST_SUFFIX}"]
    namespace, metric, comparison, threshold = EXPECTED_ALARMS[short]
    assert alarm["Namespace"] == namespace
    assert alarm["MetricName"] == metric
    assert alarm["ComparisonOperator"] == comparison
    assert alarm["Threshold"] == pytest.approx(threshold)
    assert alarm["Period"] == 60
    assert alarm["DatapointsToAlarm"] <= alarm["EvaluationPeriods"] <= 5
    assert alarm["AlarmDescription"]
    topic_ref = {"Ref": _topic_id(monitoring)}
    assert alarm["AlarmActions"] == [topic_ref]
    assert alarm["OKActions"] == [topic_ref]
    expected = {
        "AWS/RDS": ["DBInstanceIdentifier"],
        "AWS/EFS": ["FileSystemId"],
        # Powertools' dimensions of the archiver's embedded-metric-format records
        "govdr/txlog": ["Environment", "service"],
        "govdr/dr": ["Environment", "service"],
    }[namespace]
    assert sorted(d["Name"] for d in alarm["Dimensions"]) == expected


def test_archive_lag_alarm_fires_when_the_archiver_stops_reporting(synth: Synth) -> None:
    alarm = _alarms(synth.raw("monitoring"))[f"txlog-archive-lag-{TEST_SUFFIX}"]
    assert alarm["TreatMissingData"] == "breaching"
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert dims == {"service": "txlog-archiver", "Environment": TEST_SUFFIX}
    assert alarm["Statistic"] == "Maximum"


def test_alarm_set_is_exactly_the_specified_one(synth: Synth) -> None:
    assert set(_alarms(synth.raw("monitoring"))) == {
        f"{short}-{TEST_SUFFIX}" for short in EXPECTED_ALARMS
    }
    assert {spec.short for spec in alarm_specs(DrConfig())} == set(EXPECTED_ALARMS)


def test_thresholds_follow_config(variant_synth: Synth) -> None:
    alarms = _alarms(variant_synth.raw("monitoring"))
    suffix = VARIANT.environment_suffix
    assert alarms[f"rds-cpu-{suffix}"]["Threshold"] == 65
    assert alarms[f"rds-replication-slot-lag-{suffix}"]["Threshold"] == 256 * 1024**2
    assert alarms[f"rds-logical-slot-lag-{suffix}"]["Threshold"] == 256 * 1024**2


@pytest.mark.control("SI-4")
def test_alarm_action_check_failing_twin(synth: Synth) -> None:
    monitoring = copy.deepcopy(synth.raw("monitoring"))
    assert texts(alarm_action_findings(monitoring)) == []
    [(lid, alarm), *_] = resources(monitoring, "AWS::CloudWatch::Alarm")
    del alarm["Properties"]["OKActions"]
    alarm["Properties"]["AlarmActions"] = []
    assert texts(alarm_action_findings(monitoring)) == [
        f"{lid}: alarm has no alarm action",
        f"{lid}: alarm has no OK action",
    ]


@pytest.mark.control("SI-4")
def test_rds_event_subscription_categories(synth: Synth) -> None:
    monitoring = synth.raw("monitoring")
    [(_, sub)] = resources(monitoring, "AWS::RDS::EventSubscription")
    props = sub["Properties"]
    assert props["SubscriptionName"] == f"rds-events-{TEST_SUFFIX}"
    assert props["SourceType"] == "db-instance"
    assert props["Enabled"] is True
    assert props["SnsTopicArn"] == {"Ref": _topic_id(monitoring)}
    assert sorted(props["EventCategories"]) == sorted(
        [
            "failover",
            "failure",
            "availability",
            "maintenance",
            "notification",
            "recovery",
            "low storage",
        ]
    )
    assert len(props["SourceIds"]) == 1
    assert set(RDS_EVENT_CATEGORIES) == set(props["EventCategories"])


def _rule(template: dict[str, Any], name: str) -> dict[str, Any]:
    rules = {
        r["Properties"]["Name"]: r["Properties"]
        for _, r in resources(template, "AWS::Events::Rule")
    }
    return rules[name]


@pytest.mark.control("CP-10")
def test_failover_rule_pattern_and_readable_message(synth: Synth) -> None:
    monitoring = synth.raw("monitoring")
    rule = _rule(monitoring, f"rds-failover-{TEST_SUFFIX}")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.rds"]
    assert pattern["detail-type"] == ["RDS DB Instance Event"]
    assert pattern["detail"]["EventCategories"] == ["failover"]
    assert len(pattern["detail"]["SourceIdentifier"]) == 1
    [target] = rule["Targets"]
    assert target["Arn"] == {"Ref": _topic_id(monitoring)}
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"]["detail-Message"] == "$.detail.Message"
    assert "RDS failover on <detail-SourceIdentifier>" in transformer["InputTemplate"]


def test_rotation_failure_rule_pattern(synth: Synth) -> None:
    monitoring = synth.raw("monitoring")
    rule = _rule(monitoring, f"rotation-failure-{TEST_SUFFIX}")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.secretsmanager"]
    assert pattern["detail-type"] == ["AWS Service Event via CloudTrail"]
    assert pattern["detail"]["eventName"] == ["RotationFailed", "RotationAbandoned"]
    assert "MasterSecret" in json.dumps(pattern["detail"]["additionalEventData"]["SecretId"])
    [target] = rule["Targets"]
    assert "secret rotation <detail-eventName>" in target["InputTransformer"]["InputTemplate"]


def test_dashboard_shows_health_latency_storage_slots_efs_and_alarms(synth: Synth) -> None:
    [(_, dashboard)] = resources(synth.raw("monitoring"), "AWS::CloudWatch::Dashboard")
    assert dashboard["Properties"]["DashboardName"] == f"dashboard-{TEST_SUFFIX}"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for needle in (
        "CPUUtilization",
        "DatabaseConnections",
        "ReadLatency",
        "WriteLatency",
        "FreeStorageSpace",
        "FreeableMemory",
        "TransactionLogsDiskUsage",
        "OldestReplicationSlotLag",
        "DiskQueueDepth",
        "DataWriteIOBytes",
        "ClientConnections",
        "PercentIOLimit",
        "alarm",
        # The archive's slot against its cap, and its retention.
        "SlotSafeWalBytes",
        "max_slot_wal_keep_size",
        "StorageBytes",
        "InfrequentAccess",
        "ArchiveSegments",
        "RecordsPruned",
        "BytesPruned",
        "PruneFailures",
    ):
        assert needle in body, needle
    # The alarm-status widget lists every alarm of the stack.
    alarm_ids = [lid for lid, _ in resources(synth.raw("monitoring"), "AWS::CloudWatch::Alarm")]
    for lid in alarm_ids:
        assert lid in body


@pytest.mark.control("SI-4")
def test_monitoring_coverage_check_and_its_failing_twins(synth: Synth) -> None:
    monitoring = synth.raw("monitoring")
    assert texts(monitoring_coverage_findings(synth.all_raw())) == []
    # A synthesis without the monitoring template has nothing to judge and fails on all of it.
    without = {name: t for name, t in synth.all_raw().items() if name != "monitoring"}
    bare = texts(monitoring_coverage_findings(without))
    assert "monitoring: no dashboard" in bare
    assert "monitoring: no alarm on AWS/RDS CPUUtilization" in bare
    assert "monitoring: no RDS event subscription" in bare

    no_cpu = copy.deepcopy(monitoring)
    cpu = next(
        lid
        for lid, a in resources(no_cpu, "AWS::CloudWatch::Alarm")
        if a["Properties"]["MetricName"] == "CPUUtilization"
    )
    del no_cpu["Resources"][cpu]
    assert texts(monitoring_coverage_findings({"monitoring": no_cpu})) == [
        "monitoring: no alarm on AWS/RDS CPUUtilization"
    ]

    weakened = copy.deepcopy(monitoring)
    [(sub_id, sub)] = resources(weakened, "AWS::RDS::EventSubscription")
    sub["Properties"]["EventCategories"].remove("failover")
    for lid, _ in list(resources(weakened, "AWS::CloudWatch::Dashboard")):
        del weakened["Resources"][lid]
    for lid, _ in list(resources(weakened, "AWS::Events::Rule")):
        del weakened["Resources"][lid]
    assert texts(monitoring_coverage_findings({"monitoring": weakened})) == [
        "monitoring: no dashboard",
        f"monitoring: RDS event subscription rds-events-{TEST_SUFFIX} misses failover",
        "monitoring: no EventBridge rule for RDS failover events",
        "monitoring: no EventBridge rule for failed secret rotation",
    ]
    del weakened["Resources"][sub_id]
    assert "monitoring: no RDS event subscription" in texts(
        monitoring_coverage_findings({"monitoring": weakened})
    )


@pytest.mark.control("SI-4")
def test_monitoring_coverage_judges_alarms_split_across_templates(synth: Synth) -> None:
    """The required alarms may live in any template of the synthesis: moved to another one they
    still count; the twin drops the moved ones, and exactly they are reported."""
    templates = copy.deepcopy(synth.all_raw())
    monitoring, storage = templates["monitoring"]["Resources"], templates["storage"]["Resources"]
    moved = {
        lid: monitoring.pop(lid)
        for lid, alarm in list(resources(templates["monitoring"], "AWS::CloudWatch::Alarm"))
        if alarm["Properties"].get("Namespace") == "AWS/EFS"
        or alarm["Properties"].get("MetricName") == "CPUUtilization"
    }
    assert len(moved) >= 2
    storage.update(moved)
    assert texts(monitoring_coverage_findings(templates)) == []
    for lid in moved:
        del storage[lid]
    assert texts(monitoring_coverage_findings(templates)) == [
        "monitoring: no alarm on AWS/EFS PercentIOLimit",
        "monitoring: no alarm on AWS/RDS CPUUtilization",
    ]


def _statements(template: dict[str, Any], policy_name: str) -> dict[str, dict[str, Any]]:
    [policy] = [
        p["Properties"]
        for _, p in resources(template, "AWS::IAM::ManagedPolicy")
        if p["Properties"]["ManagedPolicyName"] == f"{policy_name}-{TEST_SUFFIX}"
    ]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def test_rpo_monitor_runs_every_minute_and_only_describes_the_database(synth: Synth) -> None:
    monitoring = synth.raw("monitoring")
    [(fid, function)] = [
        (lid, f)
        for lid, f in resources(monitoring, "AWS::Lambda::Function")
        if f["Properties"].get("FunctionName") == f"rpo-monitor-{TEST_SUFFIX}"
    ]
    props = function["Properties"]
    assert props["Handler"] == "govdr.rpo.runtime.handler.handler"
    assert "ReservedConcurrentExecutions" not in props
    assert props["Environment"]["Variables"]["ENVIRONMENT_SUFFIX"] == TEST_SUFFIX
    assert "RpoMonitorSecurityGroup" in json.dumps(props["VpcConfig"])
    [rule] = [
        r["Properties"]
        for _, r in resources(monitoring, "AWS::Events::Rule")
        if r["Properties"].get("ScheduleExpression")
    ]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [fid, "Arn"]}
    statements = _statements(monitoring, "rpo-monitor-policy")
    assert set(statements) == {"DescribeTheDatabase", "VpcNetworkInterfaces", "WriteOwnLogs"}
    describe = statements["DescribeTheDatabase"]
    assert describe["Action"] == "rds:DescribeDBInstances"
    # The same one instance ARN the failover template targets; no wildcard.
    [(_, fis)] = resources(monitoring, "AWS::FIS::ExperimentTemplate")
    [target] = fis["Properties"]["Targets"].values()
    assert describe["Resource"] == target["ResourceArns"][0]
    assert "*" not in json.dumps(describe["Resource"])


@pytest.mark.control("CP-10")
def test_failover_drill_template_forces_failover_of_the_one_database(synth: Synth) -> None:
    monitoring = synth.raw("monitoring")
    [(_, template)] = resources(monitoring, "AWS::FIS::ExperimentTemplate")
    props = template["Properties"]
    [action] = props["Actions"].values()
    assert action["ActionId"] == "aws:rds:reboot-db-instances"
    assert action["Parameters"] == {"forceFailover": "true"}
    [target] = props["Targets"].values()
    assert target["ResourceType"] == "aws:rds:db"
    assert target["SelectionMode"] == "ALL"
    assert len(target["ResourceArns"]) == 1
    # Stops when the RPO alarm fires: no fault injection while data is at risk.
    [stop] = props["StopConditions"]
    assert stop["Source"] == "aws:cloudwatch:alarm"
    [(rpo_alarm_id, _)] = [
        (lid, a)
        for lid, a in resources(monitoring, "AWS::CloudWatch::Alarm")
        if a["Properties"]["AlarmName"] == f"rpo-{TEST_SUFFIX}"
    ]
    assert stop["Value"] == {"Fn::GetAtt": [rpo_alarm_id, "Arn"]}
    # The role may reboot that database and nothing else.
    statements = _statements(monitoring, "fis-failover-policy")
    assert set(statements) == {"RebootTheDatabase"}
    reboot = statements["RebootTheDatabase"]
    assert sorted(reboot["Action"]) == ["rds:DescribeDBInstances", "rds:RebootDBInstance"]
    assert reboot["Resource"] == target["ResourceArns"][0]
    [(_, role)] = [
        (lid, r)
        for lid, r in resources(monitoring, "AWS::IAM::Role")
        if r["Properties"]["RoleName"] == f"fis-failover-role-{TEST_SUFFIX}"
    ]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "fis.amazonaws.com"}
    assert "aws:SourceAccount" in json.dumps(trust["Condition"])
