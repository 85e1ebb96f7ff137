"""Root stack ``TapStack<suffix>``: wires the nested stacks and publishes the outputs."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Fn, Stack, Tags
from constructs import Construct

from govdr.config import DATABASE_NAME, DrConfig
from govdr.constructs.custom_resources import bound_custom_resources
from govdr.constructs.nag_notes import acknowledgments
from govdr.stacks.audit import AuditStack
from govdr.stacks.backup import BackupStack
from govdr.stacks.database import DatabaseStack
from govdr.stacks.monitoring import MonitoringStack
from govdr.stacks.network import NetworkStack
from govdr.stacks.security import SecurityStack, txlog_integrity_condition
from govdr.stacks.storage import StorageStack


class TapStack(Stack):
    """Keys first, then network, backup, data, audit and monitoring; references flow one way."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DrConfig,
        env: Environment | None = None,
    ) -> None:
        super().__init__(
            scope,
            id_,
            env=env,
            description=(
                f"govdr disaster-recovery platform for PostgreSQL ({config.environment_suffix})"
            ),
        )
        self.config = config
        for key, value in {
            "Project": "govdr",
            "Environment": config.environment_suffix,
            "DataClassification": "citizen-data",
            "ManagedBy": "aws-cdk",
        }.items():
            Tags.of(self).add(key, value)

        self.security = SecurityStack(self, "Security", config=config)
        self.network = NetworkStack(self, "Network", config=config, logs_key=self.security.logs_key)
        self.backup = BackupStack(
            self,
            "Backup",
            config=config,
            vpc=self.network.vpc,
            function_subnets=self.network.function_subnets,
            ops_sg=self.network.ops_sg,
            provider_sg=self.network.provider_sg,
            backup_key=self.security.backup_key,
            logs_key=self.security.logs_key,
        )
        self.database = DatabaseStack(
            self,
            "Database",
            config=config,
            vpc=self.network.vpc,
            database_subnets=self.network.database_subnets,
            function_subnets=self.network.function_subnets,
            database_sg=self.network.database_sg,
            rotation_sg=self.network.rotation_sg,
            bootstrap_sg=self.network.bootstrap_sg,
            provider_sg=self.network.provider_sg,
            database_key=self.security.database_key,
            secrets_key=self.security.secrets_key,
            logs_key=self.security.logs_key,
            backup_plan=self.backup.plan,
            backup_role=self.backup.selection_role,
        )
        self.storage = StorageStack(
            self,
            "Storage",
            config=config,
            vpc=self.network.vpc,
            subnets=self.network.function_subnets,
            file_system_sg=self.network.efs_sg,
            file_system_key=self.security.file_system_key,
            backup_plan=self.backup.plan,
            backup_role=self.backup.selection_role,
            archiver_sg=self.network.txlog_sg,
            replication_secret_arn=self.database.replication_secret_arn,
            secrets_key=self.security.secrets_key,
            logs_key=self.security.logs_key,
            integrity_key=self.security.txlog_key,
            integrity_condition=txlog_integrity_condition(config),
            slot=self.database.slot_name,
            database_name=DATABASE_NAME,
        )
        # With an existing trail there is nothing to audit-log of our own (and CloudFormation
        # rejects a nested stack without resources).
        self.audit = (
            AuditStack(
                self,
                "Audit",
                config=config,
                logs_key=self.security.logs_key,
                audit_key=self.security.audit_key,
            )
            if config.creates_trail
            else None
        )
        self.monitoring = MonitoringStack(
            self,
            "Monitoring",
            config=config,
            instance=self.database.instance,
            file_system_id=self.storage.file_system.file_system_id,
            secret_arns=[
                self.database.master_secret.secret_arn,
                self.database.replication_secret_arn,
            ],
            alarms_key=self.security.alarms_key,
            logs_key=self.security.logs_key,
            vpc=self.network.vpc,
            subnets=self.network.function_subnets,
            monitor_sg=self.network.monitor_sg,
        )
        self._outputs()
        # CDK's own custom resources (S3 auto-delete, default security group) get a service
        # timeout too; govdr's set theirs from their handler's Lambda timeout.
        own = [self.database.bootstrap_resource]
        if self.backup.vault_cleaner is not None:
            own.append(self.backup.vault_cleaner)
        bound_custom_resources(self, own=own)
        self.acknowledgments = acknowledgments(self)

    def _trail_outputs(self) -> dict[str, tuple[str, str]]:
        if self.audit is None:
            assert self.config.existing_trail_arn is not None
            return {"TrailArn": (self.config.existing_trail_arn, "Existing CloudTrail trail used")}
        return {
            "TrailArn": (self.audit.trail.trail_arn, "CloudTrail trail"),
            "TrailBucketName": (self.audit.trail_bucket.bucket_name, "Bucket of the trail"),
        }

    def _outputs(self) -> None:
        vpc = self.network.vpc
        db = self.database.instance
        outputs = {
            "EnvironmentSuffix": (self.config.environment_suffix, "Suffix carried by every name"),
            "VpcId": (vpc.vpc_id, "VPC of the DR platform"),
            "DatabaseSubnetIds": (
                Fn.join(",", vpc.select_subnets(subnet_group_name="Database").subnet_ids),
                "Isolated subnets of the database, one per AZ",
            ),
            "FunctionSubnetIds": (
                Fn.join(",", vpc.select_subnets(subnet_group_name="Functions").subnet_ids),
                "Isolated subnets of in-VPC functions and EFS mount targets, one per AZ",
            ),
            "DatabaseInstanceIdentifier": (db.instance_identifier, "RDS instance identifier"),
            "DatabaseEndpointAddress": (db.db_instance_endpoint_address, "Database host name"),
            "DatabaseEndpointPort": (db.db_instance_endpoint_port, "Database port"),
            "DatabaseSecurityGroupId": (
                self.network.database_sg.security_group_id,
                "Security group of the database",
            ),
            "DatabaseSecretArn": (self.database.master_secret.secret_arn, "Master secret ARN"),
            "DatabaseSecretReadPolicyArn": (
                self.database.secret_read_policy.managed_policy_arn,
                "Managed policy that grants read access to the master secret",
            ),
            "DrillConnectPolicyArn": (
                self.database.drill_connect_policy.managed_policy_arn,
                "Managed policy for drill operators: rds-db:connect as govdr_drill (IAM token)",
            ),
            "FileSystemId": (self.storage.file_system.file_system_id, "EFS file system id"),
            "TxlogAccessPointId": (
                self.storage.txlog_access_point.access_point_id,
                "EFS access point of the transaction-log archive",
            ),
            "TxlogSecurityGroupId": (
                self.network.txlog_sg.security_group_id,
                "Security group for transaction-log clients",
            ),
            "DatabaseKeyArn": (self.security.database_key.key_arn, "KMS key of the database"),
            "SecretsKeyArn": (self.security.secrets_key.key_arn, "KMS key of the secrets"),
            "FileSystemKeyArn": (self.security.file_system_key.key_arn, "KMS key of EFS"),
            "LogsKeyArn": (self.security.logs_key.key_arn, "KMS key of the log groups"),
            "AuditKeyArn": (self.security.audit_key.key_arn, "KMS key of CloudTrail"),
            "AlarmsKeyArn": (self.security.alarms_key.key_arn, "KMS key of the alarm topic"),
            "TxlogIntegrityKeyArn": (
                self.security.txlog_key.key_arn,
                "KMS key of the archive's integrity seals (govdr txlog verify/replay --kms-key)",
            ),
            "BackupKeyArn": (self.security.backup_key.key_arn, "KMS key of the backup vault"),
            "AlarmTopicArn": (self.monitoring.topic.topic_arn, "SNS topic of alarms and events"),
            "DashboardName": (
                self.monitoring.dashboard.dashboard_name,
                "CloudWatch dashboard of the platform",
            ),
            "RdsEventSubscriptionName": (
                self.monitoring.event_subscription.ref,
                "RDS event subscription of the database",
            ),
            **self._trail_outputs(),
            "FlowLogGroupName": (
                self.network.flow_log_group.log_group_name,
                "Log group of the VPC flow logs",
            ),
            "BackupVaultName": (self.backup.vault.backup_vault_name, "AWS Backup vault"),
            "BackupPlanId": (self.backup.plan.backup_plan_id, "AWS Backup plan"),
            "ReplicationSecretArn": (
                self.database.replication_secret_arn,
                "Secret of the archiver's replication user (rotated every 30 days)",
            ),
            "TxlogSlotName": (self.database.slot_name, "Logical replication slot of the archive"),
            "TxlogSlotWalKeepMiB": (
                str(self.config.slot_wal_keep_limit_mib),
                "max_slot_wal_keep_size: WAL the slot may keep before PostgreSQL invalidates it",
            ),
            "TxlogRetentionDays": (
                str(self.config.txlog_retention_limit_days),
                "Days of archive kept: older segments are pruned (a day's margin added)",
            ),
            "TxlogArchiverFunctionName": (
                self.storage.archiver.function.function_name,
                "Lambda function of the transaction-log archiver",
            ),
            "RpoMonitorFunctionName": (
                self.monitoring.rpo_monitor.function.function_name,
                "Lambda function that publishes RpoSeconds every minute",
            ),
            "FailoverDrillTemplateId": (
                self.monitoring.failover_drill.ref,
                "AWS FIS experiment template that forces a Multi-AZ failover",
            ),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
