"""Monitoring nested stack: alarms, event notifications and the operators' dashboard.

Every alarm and event goes to one encrypted SNS topic ``alarms-<suffix>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Aws, Duration, NestedStack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_fis as fis
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from govdr.config import RPO_OBJECTIVE_SECONDS, DrConfig
from govdr.constructs.python_bundle import bundled_code
from govdr.constructs.service_role import ServiceRole
from govdr.constructs.vpc_function import VpcFunction
from govdr.naming import name
from govdr.rpo import contract as rpo
from govdr.stacks.settings import log_settings
from govdr.txlog import contract as txlog

GIB = 1024**3
MIB = 1024**2
RDS_EVENT_CATEGORIES = (
    "availability",
    "failover",
    "failure",
    "low storage",
    "maintenance",
    "notification",
    "recovery",
)
ROTATION_FAILURE_EVENTS = ("RotationFailed", "RotationAbandoned")

GT = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cw.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD


@dataclass(frozen=True)
class AlarmSpec:
    """One CloudWatch alarm: which metric, how it is judged, and why."""

    short: str
    namespace: str
    metric: str
    statistic: str
    threshold: float
    comparison: cw.ComparisonOperator
    datapoints: int
    periods: int
    description: str
    treat_missing: cw.TreatMissingData = cw.TreatMissingData.MISSING


def alarm_specs(config: DrConfig) -> list[AlarmSpec]:
    """The alarms of the platform; 1-minute periods throughout."""
    c = config
    rds_ns, efs_ns = "AWS/RDS", "AWS/EFS"
    return [
        AlarmSpec(
            "rds-cpu",
            rds_ns,
            "CPUUtilization",
            "Average",
            c.cpu_alarm_percent,
            GT,
            3,
            5,
            f"Database CPU >= {c.cpu_alarm_percent} % in 3 of 5 minutes",
        ),
        AlarmSpec(
            "rds-free-storage",
            rds_ns,
            "FreeStorageSpace",
            "Minimum",
            c.free_storage_alarm_gib * GIB,
            LT,
            1,
            1,
            f"Database free storage <= {c.free_storage_alarm_gib} GiB "
            "(backups stop when storage is full)",
        ),
        AlarmSpec(
            "rds-freeable-memory",
            rds_ns,
            "FreeableMemory",
            "Minimum",
            c.freeable_memory_alarm_mib * MIB,
            LT,
            2,
            3,
            f"Database freeable memory <= {c.freeable_memory_alarm_mib} MiB",
        ),
        AlarmSpec(
            "rds-connections",
            rds_ns,
            "DatabaseConnections",
            "Maximum",
            c.connections_alarm,
            GT,
            2,
            3,
            f"Database connections >= {c.connections_alarm}",
        ),
        AlarmSpec(
            "rds-read-latency",
            rds_ns,
            "ReadLatency",
            "Average",
            c.read_latency_alarm_ms / 1000,
            GT,
            3,
            5,
            f"Database read latency >= {c.read_latency_alarm_ms} ms",
        ),
        AlarmSpec(
            "rds-write-latency",
            rds_ns,
            "WriteLatency",
            "Average",
            c.write_latency_alarm_ms / 1000,
            GT,
            3,
            5,
            f"Database write latency >= {c.write_latency_alarm_ms} ms",
        ),
        AlarmSpec(
            "rds-disk-queue-depth",
            rds_ns,
            "DiskQueueDepth",
            "Average",
            c.disk_queue_depth_alarm,
            GT,
            3,
            5,
            f"Database disk queue depth >= {c.disk_queue_depth_alarm}",
        ),
        AlarmSpec(
            "rds-txlog-disk-usage",
            rds_ns,
            "TransactionLogsDiskUsage",
            "Maximum",
            c.txlog_disk_usage_alarm_gib * GIB,
            GT,
            1,
            1,
            f"WAL retained on disk >= {c.txlog_disk_usage_alarm_gib} GiB "
            "(an unconsumed replication slot fills storage)",
            cw.TreatMissingData.NOT_BREACHING,
        ),
        AlarmSpec(
            "rds-replication-slot-lag",
            rds_ns,
            "OldestReplicationSlotLag",
            "Maximum",
            c.replication_slot_lag_alarm_mib * MIB,
            GT,
            1,
            1,
            f"Oldest replication slot lags >= {c.replication_slot_lag_alarm_mib} MiB of WAL; "
            f"PostgreSQL invalidates it at {c.slot_wal_keep_limit_mib} MiB "
            "(max_slot_wal_keep_size) and the archive records a gap",
            cw.TreatMissingData.NOT_BREACHING,
        ),
        # RDS publishes the logical slots' lag apart as well; the documentation does not say
        # whether OldestReplicationSlotLag counts logical slots, so both alarm at the same
        # threshold (both Bytes: https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html).
        AlarmSpec(
            "rds-logical-slot-lag",
            rds_ns,
            "OldestLogicalReplicationSlotLag",
            "Maximum",
            c.replication_slot_lag_alarm_mib * MIB,
            GT,
            1,
            1,
            f"Oldest logical replication slot (the archive's) lags >= "
            f"{c.replication_slot_lag_alarm_mib} MiB of WAL; PostgreSQL invalidates it at "
            f"{c.slot_wal_keep_limit_mib} MiB (max_slot_wal_keep_size) and the archive records "
            "a gap",
            cw.TreatMissingData.NOT_BREACHING,
        ),
        AlarmSpec(
            "efs-io-limit",
            efs_ns,
            "PercentIOLimit",
            "Maximum",
            c.efs_io_limit_alarm_percent,
            GT,
            2,
            3,
            f"Transaction-log file system at >= {c.efs_io_limit_alarm_percent} % of its I/O limit",
            cw.TreatMissingData.NOT_BREACHING,
        ),
        AlarmSpec(
            "txlog-archive-lag",
            txlog.NAMESPACE,
            txlog.ARCHIVE_LAG_SECONDS,
            "Maximum",
            c.archive_lag_alarm_seconds,
            GT,
            2,
            3,
            f"Transaction-log archive >= {c.archive_lag_alarm_seconds} s behind the database, "
            "or the archiver has stopped reporting (missing data breaches)",
            cw.TreatMissingData.BREACHING,
        ),
        AlarmSpec(
            "txlog-archive-gaps",
            txlog.NAMESPACE,
            txlog.ARCHIVE_GAPS,
            "Maximum",
            1,
            GT,
            1,
            1,
            "The transaction-log archive recorded a gap: changes between two LSNs are not in it "
            "and replay stops there (govdr txlog verify lists it; docs/runbook.md, Archive gap)",
            cw.TreatMissingData.NOT_BREACHING,
        ),
        AlarmSpec(
            "rpo",
            rpo.NAMESPACE,
            rpo.RPO_SECONDS,
            "Maximum",
            c.rpo_alarm_seconds,
            GT,
            2,
            3,
            f"Recovery point >= {c.rpo_alarm_seconds} s old (objective: < "
            f"{RPO_OBJECTIVE_SECONDS} s), or the RPO monitor has stopped reporting",
            cw.TreatMissingData.BREACHING,
        ),
    ]


class MonitoringStack(NestedStack):
    """Alarm topic, metric alarms, RDS and EventBridge notifications, dashboard."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DrConfig,
        instance: rds.IDatabaseInstance,
        file_system_id: str,
        secret_arns: Sequence[str],
        alarms_key: kms.IKey,
        logs_key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        monitor_sg: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, id_, description=f"govdr monitoring ({config.environment_suffix})")
        suffix = config.environment_suffix
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=name("alarms", suffix),
            display_name=f"govdr alarms ({suffix})",
            master_key=alarms_key,
            enforce_ssl=True,
        )
        # A topic policy replaces SNS's default one, so the publishing services are named.
        publishers = {
            "PublishCloudWatchAlarms": "cloudwatch.amazonaws.com",
            "PublishRdsEvents": "events.rds.amazonaws.com",
        }
        for sid, service in publishers.items():
            self.topic.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    principals=[iam.ServicePrincipal(service)],
                    actions=["sns:Publish"],
                    resources=[self.topic.topic_arn],
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                )
            )
        if config.alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(config.alarm_email))

        dimensions = {
            "AWS/RDS": {"DBInstanceIdentifier": instance.instance_identifier},
            "AWS/EFS": {"FileSystemId": file_system_id},
            # Powertools' dimensions of the archiver's embedded-metric-format records
            txlog.NAMESPACE: {"service": txlog.SERVICE, "Environment": suffix},
            rpo.NAMESPACE: {"service": rpo.SERVICE, "Environment": suffix},
        }
        action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cw.Alarm] = {}
        for spec in alarm_specs(config):
            metric = cw.Metric(
                namespace=spec.namespace,
                metric_name=spec.metric,
                dimensions_map=dimensions[spec.namespace],
                statistic=spec.statistic,
                period=Duration.minutes(1),
            )
            alarm = cw.Alarm(
                self,
                "".join(part.capitalize() for part in spec.short.split("-")) + "Alarm",
                alarm_name=name(spec.short, suffix),
                alarm_description=spec.description,
                metric=metric,
                threshold=spec.threshold,
                comparison_operator=spec.comparison,
                evaluation_periods=spec.periods,
                datapoints_to_alarm=spec.datapoints,
                treat_missing_data=spec.treat_missing,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[spec.short] = alarm

        self.event_subscription = rds.CfnEventSubscription(
            self,
            "RdsEventSubscription",
            subscription_name=name("rds-events", suffix),
            sns_topic_arn=self.topic.topic_arn,
            source_type="db-instance",
            source_ids=[instance.instance_identifier],
            event_categories=list(RDS_EVENT_CATEGORIES),
            enabled=True,
        )

        self.failover_rule = events.Rule(
            self,
            "FailoverRule",
            rule_name=name("rds-failover", suffix),
            description="RDS Multi-AZ failover of the govdr database, to operators in seconds",
            event_pattern=events.EventPattern(
                source=["aws.rds"],
                detail_type=["RDS DB Instance Event"],
                detail={
                    "SourceIdentifier": [instance.instance_identifier],
                    "EventCategories": ["failover"],
                },
            ),
        )
        self.failover_rule.add_target(
            targets.SnsTopic(
                self.topic,
                message=events.RuleTargetInput.from_text(
                    f"govdr {suffix}: RDS failover on "
                    f"{events.EventField.from_path('$.detail.SourceIdentifier')} at "
                    f"{events.EventField.time}: "
                    f"{events.EventField.from_path('$.detail.Message')} "
                    f"({events.EventField.from_path('$.detail.EventID')})"
                ),
            )
        )
        self.rotation_rule = events.Rule(
            self,
            "RotationFailureRule",
            rule_name=name("rotation-failure", suffix),
            description="Failed or abandoned rotation of a govdr database secret",
            event_pattern=events.EventPattern(
                source=["aws.secretsmanager"],
                detail_type=["AWS Service Event via CloudTrail"],
                detail={
                    "eventSource": ["secretsmanager.amazonaws.com"],
                    "eventName": list(ROTATION_FAILURE_EVENTS),
                    "additionalEventData": {"SecretId": list(secret_arns)},
                },
            ),
        )
        self.rotation_rule.add_target(
            targets.SnsTopic(
                self.topic,
                message=events.RuleTargetInput.from_text(
                    f"govdr {suffix}: secret rotation "
                    f"{events.EventField.from_path('$.detail.eventName')} at "
                    f"{events.EventField.time} for "
                    f"{events.EventField.from_path('$.detail.additionalEventData.SecretId')}; "
                    "see the rotation function's log group and docs/runbook.md"
                ),
            )
        )

        self.dashboard = self._dashboard(config, dimensions)
        self._rpo_monitor(config, instance, logs_key, vpc, subnets, monitor_sg)
        self._failover_drill(config, instance)

    def _rpo_monitor(
        self,
        config: DrConfig,
        instance: rds.IDatabaseInstance,
        logs_key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        monitor_sg: ec2.ISecurityGroup,
    ) -> None:
        """Every minute: RpoSeconds = now - LatestRestorableTime (alarm above)."""
        self.rpo_monitor = VpcFunction(
            self,
            "RpoMonitor",
            environment_suffix=config.environment_suffix,
            function_type=rpo.SERVICE,
            description="Publishes the database's recovery point age (RpoSeconds) every minute",
            code=bundled_code("rpo"),
            handler="govdr.rpo.runtime.handler.handler",
            statements=[
                iam.PolicyStatement(
                    sid="DescribeTheDatabase",
                    actions=["rds:DescribeDBInstances"],
                    resources=[instance.instance_arn],
                )
            ],
            vpc=vpc,
            subnets=subnets,
            security_group=monitor_sg,
            logs=log_settings(config, logs_key),
            timeout=Duration.seconds(30),
            environment={
                rpo.ENV_DB_INSTANCE_ID: instance.instance_identifier,
                rpo.ENV_ENVIRONMENT_SUFFIX: config.environment_suffix,
            },
        )
        self.rpo_schedule = self.rpo_monitor.run_every_minute(
            "Measures the recovery point every minute"
        )
        self.rpo_monitor.without_dead_letter_queue(
            "invoked by a one-minute schedule with empty events and no retries: a failed run "
            "publishes no RpoSeconds data point and the RPO alarm treats missing data as "
            "breaching, so operators are paged; a dead-letter queue would only collect empty "
            "schedule ticks"
        )

    def _failover_drill(self, config: DrConfig, instance: rds.IDatabaseInstance) -> None:
        """An AWS FIS experiment template that forces a Multi-AZ failover of the database.

        It stops when the RPO alarm fires: no fault is injected while data is at risk.
        """
        suffix = config.environment_suffix
        self.fis_role = ServiceRole(
            self,
            "FailoverDrillRole",
            role_name=name("fis-failover-role", suffix),
            policy_name=name("fis-failover-policy", suffix),
            description="AWS FIS may reboot (force a failover of) the one govdr database",
            assumed_by=iam.ServicePrincipal(
                "fis.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            statements=[
                iam.PolicyStatement(
                    sid="RebootTheDatabase",
                    actions=["rds:RebootDBInstance", "rds:DescribeDBInstances"],
                    resources=[instance.instance_arn],
                )
            ],
        )
        self.failover_drill = fis.CfnExperimentTemplate(
            self,
            "FailoverDrill",
            description=f"govdr {suffix}: forced Multi-AZ failover of the database (RTO drill)",
            role_arn=self.fis_role.role.role_arn,
            stop_conditions=[
                fis.CfnExperimentTemplate.ExperimentTemplateStopConditionProperty(
                    source="aws:cloudwatch:alarm", value=self.alarms["rpo"].alarm_arn
                )
            ],
            targets={
                "Database": fis.CfnExperimentTemplate.ExperimentTemplateTargetProperty(
                    resource_type="aws:rds:db",
                    resource_arns=[instance.instance_arn],
                    selection_mode="ALL",
                )
            },
            actions={
                "ForceFailover": fis.CfnExperimentTemplate.ExperimentTemplateActionProperty(
                    action_id="aws:rds:reboot-db-instances",
                    description="Reboot with failover to the standby in another AZ",
                    parameters={"forceFailover": "true"},
                    targets={"DBInstances": "Database"},
                )
            },
            tags={"Name": name("fis-failover", suffix)},
        )

    def _dashboard(self, config: DrConfig, dimensions: dict[str, dict[str, str]]) -> cw.Dashboard:
        def metric(namespace: str, metric_name: str, statistic: str = "Average") -> cw.Metric:
            return cw.Metric(
                namespace=namespace,
                metric_name=metric_name,
                dimensions_map=dimensions[namespace],
                statistic=statistic,
                period=Duration.minutes(1),
            )

        def graph(title: str, *metrics: cw.Metric) -> cw.GraphWidget:
            return cw.GraphWidget(title=title, left=list(metrics), width=8, height=6)

        rds_ns, efs_ns = "AWS/RDS", "AWS/EFS"
        dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=name("dashboard", config.environment_suffix),
            default_interval=Duration.hours(3),
        )
        dashboard.add_widgets(
            cw.AlarmStatusWidget(
                title="Alarm states", alarms=list(self.alarms.values()), width=24, height=4
            )
        )
        dashboard.add_widgets(
            graph("Database CPU (%)", metric(rds_ns, "CPUUtilization")),
            graph("Connections", metric(rds_ns, "DatabaseConnections", "Maximum")),
            graph(
                "Latency (s)",
                metric(rds_ns, "ReadLatency"),
                metric(rds_ns, "WriteLatency"),
            ),
        )
        dashboard.add_widgets(
            graph(
                "Storage and memory (bytes)",
                metric(rds_ns, "FreeStorageSpace", "Minimum"),
                metric(rds_ns, "FreeableMemory", "Minimum"),
            ),
            cw.GraphWidget(
                title="Replication slots (bytes): WAL kept, lag, safe WAL left",
                left=[
                    metric(rds_ns, "TransactionLogsDiskUsage", "Maximum"),
                    metric(rds_ns, "OldestReplicationSlotLag", "Maximum"),
                    metric(rds_ns, "OldestLogicalReplicationSlotLag", "Maximum"),
                    metric(txlog.NAMESPACE, txlog.SLOT_SAFE_WAL_BYTES, "Minimum"),
                ],
                left_annotations=[
                    cw.HorizontalAnnotation(
                        value=config.replication_slot_lag_alarm_mib * MIB, label="alarm"
                    ),
                    cw.HorizontalAnnotation(
                        value=config.slot_wal_keep_limit_mib * MIB,
                        label="max_slot_wal_keep_size",
                    ),
                ],
                width=8,
                height=6,
            ),
            graph("Disk queue depth", metric(rds_ns, "DiskQueueDepth")),
        )
        dashboard.add_widgets(
            graph(
                "EFS I/O (bytes)",
                metric(efs_ns, "DataReadIOBytes", "Sum"),
                metric(efs_ns, "DataWriteIOBytes", "Sum"),
            ),
            graph(
                "EFS clients and I/O limit",
                metric(efs_ns, "ClientConnections", "Sum"),
                metric(efs_ns, "PercentIOLimit", "Maximum"),
            ),
            graph(
                "Transaction-log archive lag (s)",
                metric(txlog.NAMESPACE, txlog.ARCHIVE_LAG_SECONDS, "Maximum"),
            ),
        )
        dashboard.add_widgets(
            graph(
                "Transactions archived per minute",
                metric(txlog.NAMESPACE, txlog.TRANSACTIONS_ARCHIVED, "Sum"),
            ),
            graph(
                "Bytes archived per minute", metric(txlog.NAMESPACE, txlog.BYTES_ARCHIVED, "Sum")
            ),
            graph(
                "Segments written per minute",
                metric(txlog.NAMESPACE, txlog.SEGMENTS_WRITTEN, "Sum"),
            ),
        )

        def efs_storage(storage_class: str) -> cw.Metric:
            # EFS reports its size about every 15 minutes, per storage class:
            # https://docs.aws.amazon.com/efs/latest/ug/efs-metrics.html
            return cw.Metric(
                namespace=efs_ns,
                metric_name="StorageBytes",
                dimensions_map={**dimensions[efs_ns], "StorageClass": storage_class},
                statistic="Maximum",
                period=Duration.hours(1),
            )

        dashboard.add_widgets(
            graph(
                f"Archive size (bytes): the file system, {config.txlog_retention_limit_days} "
                "days kept",
                efs_storage("Total"),
                efs_storage("InfrequentAccess"),
            ),
            graph(
                "Archive retention: segments kept, records pruned, failed prunes",
                metric(txlog.NAMESPACE, txlog.ARCHIVE_SEGMENTS, "Maximum"),
                metric(txlog.NAMESPACE, txlog.RECORDS_PRUNED, "Sum"),
                metric(txlog.NAMESPACE, txlog.PRUNE_FAILURES, "Sum"),
            ),
            graph("Bytes pruned per minute", metric(txlog.NAMESPACE, txlog.BYTES_PRUNED, "Sum")),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title=f"Recovery point (s): RPO objective < {RPO_OBJECTIVE_SECONDS} s",
                left=[
                    metric(rpo.NAMESPACE, rpo.RPO_SECONDS, "Maximum"),
                    metric(txlog.NAMESPACE, txlog.ARCHIVE_LAG_SECONDS, "Maximum"),
                ],
                left_annotations=[
                    cw.HorizontalAnnotation(value=config.rpo_alarm_seconds, label="alarm"),
                    cw.HorizontalAnnotation(value=RPO_OBJECTIVE_SECONDS, label="objective"),
                ],
                width=24,
                height=6,
            )
        )
        return dashboard
