"""Storage nested stack: the EFS file system that holds the transaction-log archive."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, NestedStack, RemovalPolicy, Tags
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from govdr.config import DrConfig
from govdr.constructs.python_bundle import bundled_code
from govdr.constructs.vpc_function import VpcFunction
from govdr.naming import name
from govdr.stacks.database import secret_read_statements
from govdr.stacks.settings import log_settings
from govdr.txlog import contract as txlog

TXLOG_PATH = "/txlog"
# Fixed POSIX identity of the archive: every client through the access point acts as it.
TXLOG_UID = "5432"
TXLOG_GID = "5432"
TXLOG_PERMISSIONS = "750"
ARCHIVE_MOUNT = "/mnt/txlog"
# Each run stops SAFETY_MARGIN_SECONDS (handler) before this, flushes and acknowledges.
ARCHIVER_TIMEOUT_SECONDS = 60


class StorageStack(NestedStack):
    """Encrypted EFS with mount targets in every AZ and a TLS-only file-system policy."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DrConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        file_system_sg: ec2.ISecurityGroup,
        file_system_key: kms.IKey,
        backup_plan: backup.IBackupPlan,
        backup_role: iam.IRole,
        archiver_sg: ec2.ISecurityGroup,
        replication_secret_arn: str,
        secrets_key: kms.IKey,
        logs_key: kms.IKey,
        integrity_key: kms.IKey,
        integrity_condition: dict[str, dict[str, Any]],
        slot: str,
        database_name: str,
    ) -> None:
        super().__init__(scope, id_, description=f"govdr storage ({config.environment_suffix})")
        suffix = config.environment_suffix

        deny_insecure = iam.PolicyStatement(
            sid="DenyNonTlsAccess",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["*"],
            resources=["*"],
            conditions={"Bool": {"aws:SecureTransport": "false"}},
        )
        self.file_system = efs.FileSystem(
            self,
            "FileSystem",
            vpc=vpc,
            vpc_subnets=subnets,
            security_group=file_system_sg,
            file_system_name=name("efs", suffix),
            encrypted=True,
            kms_key=file_system_key,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            # Segments are written once and read only in an incident: after a week they move
            # to Infrequent Access and stay there when read (a verify or replay reads them all
            # once). https://docs.aws.amazon.com/efs/latest/ug/lifecycle-management-efs.html
            lifecycle_policy=efs.LifecyclePolicy.AFTER_7_DAYS,
            # Backed up by the govdr plan into the CMK vault. EFS's own automatic backups are
            # off: they land in an AWS-managed vault that outlives the stack.
            enable_automatic_backups=False,
            allow_anonymous_access=False,
            file_system_policy=iam.PolicyDocument(statements=[deny_insecure]),
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        cfn_fs = self.file_system.node.default_child
        assert isinstance(cfn_fs, efs.CfnFileSystem)
        cfn_fs.backup_policy = efs.CfnFileSystem.BackupPolicyProperty(status="DISABLED")
        self.txlog_access_point = self.file_system.add_access_point(
            "TxlogAccessPoint",
            path=TXLOG_PATH,
            posix_user=efs.PosixUser(uid=TXLOG_UID, gid=TXLOG_GID),
            create_acl=efs.Acl(
                owner_uid=TXLOG_UID, owner_gid=TXLOG_GID, permissions=TXLOG_PERMISSIONS
            ),
        )
        Tags.of(self.txlog_access_point).add("Name", name("efs-ap-txlog", suffix))

        self.backup_selection = backup.BackupSelection(
            self,
            "BackupSelection",
            backup_plan=backup_plan,
            backup_selection_name=name("backup-efs", suffix),
            resources=[backup.BackupResource.from_efs_file_system(self.file_system)],
            role=backup_role,
        )

        self._archiver(
            config,
            vpc,
            subnets,
            archiver_sg,
            replication_secret_arn,
            secrets_key,
            logs_key,
            slot,
            database_name,
            integrity_key,
            integrity_condition,
        )

    def _archiver(
        self,
        config: DrConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        archiver_sg: ec2.ISecurityGroup,
        replication_secret_arn: str,
        secrets_key: kms.IKey,
        logs_key: kms.IKey,
        slot: str,
        database_name: str,
        integrity_key: kms.IKey,
        integrity_condition: dict[str, dict[str, Any]],
    ) -> None:
        """The transaction-log archiver: every minute, one run at a time, into /txlog."""
        self.archiver = VpcFunction(
            self,
            "TxlogArchiver",
            environment_suffix=config.environment_suffix,
            function_type=txlog.SERVICE,
            description="Archives committed transactions from the logical slot to EFS",
            code=bundled_code("txlog"),
            handler="govdr.txlog.runtime.handler.handler",
            statements=[
                *secret_read_statements(replication_secret_arn, secrets_key.key_arn),
                # The archive's seal key: a data key generated once, decrypted at each run,
                # only with this environment's encryption context (the key policy requires it;
                # the condition keys are kms:EncryptionContext:<key> and
                # kms:EncryptionContextKeys:
                # https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html).
                # Checked against the key policy by the gate rule key-requirements.
                iam.PolicyStatement(
                    sid="ArchiveIntegrityKey",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[integrity_key.key_arn],
                    conditions=integrity_condition,
                ),
                iam.PolicyStatement(
                    sid="MountTxlogAccessPoint",
                    actions=["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                    resources=[self.file_system.file_system_arn],
                    # elasticfilesystem:AccessPointArn is of type ARN, so an ARN operator:
                    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticfilesystem.html#amazonelasticfilesystem-policy-keys
                    conditions={
                        "ArnEquals": {
                            "elasticfilesystem:AccessPointArn": (
                                self.txlog_access_point.access_point_arn
                            )
                        }
                    },
                ),
            ],
            vpc=vpc,
            subnets=subnets,
            security_group=archiver_sg,
            logs=log_settings(config, logs_key),
            timeout=Duration.seconds(ARCHIVER_TIMEOUT_SECONDS),
            memory_size=512,
            environment={
                txlog.ENV_SECRET_ARN: replication_secret_arn,
                txlog.ENV_ARCHIVE_DIR: ARCHIVE_MOUNT,
                txlog.ENV_SLOT_NAME: slot,
                txlog.ENV_DB_NAME: database_name,
                txlog.ENV_ENVIRONMENT_SUFFIX: config.environment_suffix,
                txlog.ENV_INTEGRITY_KEY_ARN: integrity_key.key_arn,
                # Segments older than this (plus a day) are pruned (txlogRetentionDays).
                txlog.ENV_RETENTION_DAYS: str(config.txlog_retention_limit_days),
                # No TLS setting: govdr/lambda_support/pg_tls.py always verifies the server
                # (verify-full with the pinned RDS roots in the bundle, require_auth=scram-sha-256).
            },
            filesystem=lambda_.FileSystem.from_efs_access_point(
                self.txlog_access_point, ARCHIVE_MOUNT
            ),
        )
        self.archiver.function.node.add_dependency(self.file_system.mount_targets_available)
        self.archiver_schedule = self.archiver.run_every_minute(
            "Runs the transaction-log archiver every minute"
        )
        self.archiver.without_dead_letter_queue(
            "invoked by a one-minute schedule with empty events and no retries: a failed run "
            "leaves the slot where it was (nothing is acknowledged before it is on disk), the "
            "next tick resumes, and the archive-lag alarm (missing data breaches) pages "
            "operators, so a dead-letter queue would only collect empty schedule ticks"
        )
