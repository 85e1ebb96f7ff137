"""Database nested stack: RDS for PostgreSQL Multi-AZ, its master secret and rotation.

The secret, its target attachment and its rotation schedule stay in this one stack: the
``AWS::SecretsManager`` transform must sit at the top of the template that holds the
schedule, and compliance rules look for a secret's rotation in the secret's own stack.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, CustomResource, Duration, NestedStack, RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from govdr.config import DrConfig
from govdr.constructs.custom_resources import service_timeout
from govdr.constructs.log_group import encrypted_log_group
from govdr.constructs.python_bundle import bundled_code
from govdr.constructs.service_role import ServiceRole
from govdr.constructs.vpc_function import VpcFunction
from govdr.engine import connection_logging
from govdr.naming import name, slot_name

MASTER_USERNAME = "govdr_admin"
# The archiver's own login: logical replication only, never the master credentials.
REPLICATION_USERNAME = "govdr_txlog"
DATABASE_NAME = "govdr"
ROTATION_DAYS = 30
MONITORING_INTERVAL_SECONDS = 60
BOOTSTRAP_TIMEOUT_SECONDS = 120
# Characters that break connection strings or shell quoting in operator tooling.
PASSWORD_EXCLUDE = " %+~`#$&*()|[]{}:;<>?!'/@\"\\"  # noqa: S105 - not a password

PARAMETERS = {
    # Static parameters: they take effect at creation, so they are set from the start.
    "rds.force_ssl": "1",
    "rds.logical_replication": "1",
    "ssl_min_protocol_version": "TLSv1.2",
    # Audit trail inside the database (FedRAMP AU-2/AU-12): who connected, and every DDL,
    # role change and write, as pgaudit session records in the exported postgresql log.
    "shared_preload_libraries": "pg_stat_statements,pgaudit",
    "pgaudit.log": "ddl,role,write",
    "pgaudit.log_catalog": "0",
    "pgaudit.log_parameter": "0",
    "pgaudit.role": "rds_pgaudit",
    # Commit times of the newest transaction, for the archive-lag metric (static).
    "track_commit_timestamp": "1",
}
# Connection logging (who connected, how, as whom) comes from govdr.engine per major version.
LOG_EXPORTS = ("postgresql", "upgrade")


class DatabaseStack(NestedStack):
    """Multi-AZ PostgreSQL with CMK encryption, TLS only, PITR and 30-day credential rotation."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DrConfig,
        vpc: ec2.IVpc,
        database_subnets: ec2.SubnetSelection,
        function_subnets: ec2.SubnetSelection,
        database_sg: ec2.ISecurityGroup,
        rotation_sg: ec2.ISecurityGroup,
        bootstrap_sg: ec2.ISecurityGroup,
        database_key: kms.IKey,
        secrets_key: kms.IKey,
        logs_key: kms.IKey,
        backup_plan: backup.IBackupPlan,
        backup_role: iam.IRole,
    ) -> None:
        super().__init__(scope, id_, description=f"govdr database ({config.environment_suffix})")
        suffix = config.environment_suffix
        self.secrets_key = secrets_key

        engine = rds.DatabaseInstanceEngine.postgres(
            version=rds.PostgresEngineVersion.of(config.engine_version, config.engine_major)
        )
        self.parameter_group = rds.ParameterGroup(
            self,
            "ParameterGroup",
            engine=engine,
            name=name("rds-params", suffix),
            description=f"govdr PostgreSQL {config.engine_major}: TLS only, logical decoding",
            parameters=parameters(int(config.engine_major)),
            removal_policy=RemovalPolicy.DESTROY,
        )
        subnet_group = rds.SubnetGroup(
            self,
            "SubnetGroup",
            vpc=vpc,
            vpc_subnets=database_subnets,
            subnet_group_name=name("rds-subnets", suffix),
            description="govdr database: isolated subnets in three AZs",
            removal_policy=RemovalPolicy.DESTROY,
        )
        # The statements of AWS's AmazonRDSEnhancedMonitoringRole, narrowed from any RDS*
        # log group in any region to the one RDSOSMetrics group of this account and region.
        os_metrics = (
            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:RDSOSMetrics"
        )
        self.monitoring_role = ServiceRole(
            self,
            "MonitoringRole",
            role_name=name("rds-monitoring-role", suffix),
            policy_name=name("rds-monitoring-policy", suffix),
            description="RDS enhanced monitoring publishes OS metrics to CloudWatch Logs",
            assumed_by=iam.ServicePrincipal("monitoring.rds.amazonaws.com"),
            statements=[
                iam.PolicyStatement(
                    sid="EnableCreationAndManagementOfRDSCloudwatchLogGroups",
                    actions=["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
                    resources=[os_metrics],
                ),
                iam.PolicyStatement(
                    sid="EnableCreationAndManagementOfRDSCloudwatchLogStreams",
                    actions=[
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                        "logs:GetLogEvents",
                    ],
                    resources=[f"{os_metrics}:log-stream:*"],
                ),
            ],
        )

        self.master_secret = rds.DatabaseSecret(
            self,
            "MasterSecret",
            username=MASTER_USERNAME,
            secret_name=name("rds-master-secret", suffix),
            encryption_key=secrets_key,
            exclude_characters=PASSWORD_EXCLUDE,
        )
        self.master_secret.apply_removal_policy(
            RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        )

        instance_id = name("rds", suffix)
        self.log_groups = [
            encrypted_log_group(
                self,
                f"LogGroup{export.capitalize()}",
                log_group_name=f"/aws/rds/instance/{instance_id}/{export}",
                key=logs_key,
                config=config,
            )
            for export in LOG_EXPORTS
        ]

        self.instance = rds.DatabaseInstance(
            self,
            "Database",
            instance_identifier=instance_id,
            engine=engine,
            instance_type=ec2.InstanceType(config.instance_class.removeprefix("db.")),
            credentials=rds.Credentials.from_secret(self.master_secret),
            database_name=DATABASE_NAME,
            vpc=vpc,
            subnet_group=subnet_group,
            security_groups=[database_sg],
            publicly_accessible=False,
            multi_az=True,
            port=5432,
            storage_type=rds.StorageType.GP3,
            allocated_storage=config.allocated_storage_gib,
            max_allocated_storage=config.max_allocated_storage_gib,
            storage_encrypted=True,
            storage_encryption_key=database_key,
            parameter_group=self.parameter_group,
            ca_certificate=rds.CaCertificate.RDS_CA_RSA2048_G1,
            iam_authentication=True,
            enable_performance_insights=True,
            performance_insight_encryption_key=database_key,
            performance_insight_retention=rds.PerformanceInsightRetention.DEFAULT,
            database_insights_mode=rds.DatabaseInsightsMode.STANDARD,
            monitoring_interval=Duration.seconds(MONITORING_INTERVAL_SECONDS),
            monitoring_role=self.monitoring_role.immutable,
            cloudwatch_logs_exports=list(LOG_EXPORTS),
            backup_retention=Duration.days(config.backup_retention_days),
            preferred_backup_window="01:00-02:00",
            preferred_maintenance_window="sun:02:30-sun:03:30",
            copy_tags_to_snapshot=True,
            # Off only when a minor is pinned, which RDS's upgrades would contradict.
            auto_minor_version_upgrade=not config.pins_minor_version,
            allow_major_version_upgrade=False,
            deletion_protection=bool(config.deletion_protection),
            delete_automated_backups=not config.retain_data,
            removal_policy=RemovalPolicy.SNAPSHOT if config.retain_data else RemovalPolicy.DESTROY,
        )
        for log_group in self.log_groups:
            self.instance.node.add_dependency(log_group)
        assert self.instance.secret is not None
        # The attachment adds host, port and engine to the secret; rotation must use it.
        self.secret: sm.ISecret = self.instance.secret

        rotation_function = name("rds-rotation", suffix)
        self.rotation_log_group = encrypted_log_group(
            self,
            "RotationLogGroup",
            log_group_name=f"/aws/lambda/{rotation_function}",
            key=logs_key,
            config=config,
        )
        # Hosted rotation (AWS::SecretsManager transform) instead of the Serverless
        # Application Repository, which does not exist in eu-central-2.
        self.rotation = self.secret.add_rotation_schedule(
            "Rotation",
            automatically_after=Duration.days(ROTATION_DAYS),
            hosted_rotation=sm.HostedRotation.postgre_sql_single_user(
                function_name=rotation_function,
                vpc=vpc,
                vpc_subnets=function_subnets,
                security_groups=[rotation_sg],
                exclude_characters=PASSWORD_EXCLUDE,
            ),
        )

        # The first rotation runs at creation; its log group must already exist.
        self.rotation.node.add_dependency(self.rotation_log_group)

        self._replication_user(
            config, vpc, function_subnets, rotation_sg, bootstrap_sg, secrets_key, logs_key
        )

        self.backup_selection = backup.BackupSelection(
            self,
            "BackupSelection",
            backup_plan=backup_plan,
            backup_selection_name=name("backup-rds", suffix),
            resources=[backup.BackupResource.from_rds_database_instance(self.instance)],
            role=backup_role,
        )

        # The one way to read the credentials: attach this policy to an operator or
        # workload role. Identity-based, so no key or secret policy points back at callers.
        self.secret_read_policy = iam.ManagedPolicy(
            self,
            "SecretReadPolicy",
            managed_policy_name=name("rds-secret-read", suffix),
            description="Read the govdr database master secret (and nothing else)",
            statements=secret_read_statements(self.master_secret.secret_arn, secrets_key.key_arn),
        )

    def _replication_user(
        self,
        config: DrConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        rotation_sg: ec2.ISecurityGroup,
        bootstrap_sg: ec2.ISecurityGroup,
        secrets_key: kms.IKey,
        logs_key: kms.IKey,
    ) -> None:
        """The archiver's login: its own secret (CMK), created in the database by a bootstrap
        custom resource, then rotated every 30 days by the multi-user hosted rotation."""
        suffix = config.environment_suffix
        self.slot_name = slot_name(suffix)
        self.replication_secret = rds.DatabaseSecret(
            self,
            "ReplicationSecret",
            username=REPLICATION_USERNAME,
            secret_name=name("rds-txlog-secret", suffix),
            encryption_key=secrets_key,
            exclude_characters=PASSWORD_EXCLUDE,
            master_secret=self.master_secret,
        )
        self.replication_secret.apply_removal_policy(
            RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        )
        # host, port, engine and dbname, which the rotation and the archiver read
        attached = self.replication_secret.attach(self.instance)

        self.bootstrap = VpcFunction(
            self,
            "TxlogBootstrap",
            config=config,
            function_type="txlog-bootstrap",
            description="Creates the archiver's replication user; drops its slot on teardown",
            code=bundled_code("txlog_archiver"),
            handler="runtime.txlog_archiver.bootstrap.handler",
            statements=secret_read_statements(
                [self.master_secret.secret_arn, self.replication_secret.secret_arn],
                secrets_key.key_arn,
            ),
            vpc=vpc,
            subnets=subnets,
            # Its own group: the database, Secrets Manager, and S3 for the response.
            security_group=bootstrap_sg,
            logs_key=logs_key,
            timeout=Duration.seconds(BOOTSTRAP_TIMEOUT_SECONDS),
        )
        self.bootstrap_resource = CustomResource(
            self,
            "TxlogBootstrapResource",
            service_token=self.bootstrap.function.function_arn,
            resource_type="Custom::TxlogBootstrap",
            service_timeout=Duration.seconds(service_timeout(BOOTSTRAP_TIMEOUT_SECONDS)),
            properties={
                "MasterSecretArn": self.master_secret.secret_arn,
                "ReplicationSecretArn": self.replication_secret.secret_arn,
                "SlotName": self.slot_name,
                "DatabaseName": DATABASE_NAME,
            },
        )
        # Both attachments (host, port) must exist before the bootstrap reads the secrets. The
        # CfnResources, not the constructs: an attachment's rotation schedule is its child.
        for dependency in (self.secret, attached, self.instance):
            child = dependency.node.default_child
            assert child is not None
            self.bootstrap_resource.node.add_dependency(child)

        rotation_function = name("rds-txlog-rotation", suffix)
        self.replication_rotation_log_group = encrypted_log_group(
            self,
            "ReplicationRotationLogGroup",
            log_group_name=f"/aws/lambda/{rotation_function}",
            key=logs_key,
            config=config,
        )
        self.replication_rotation = attached.add_rotation_schedule(
            "Rotation",
            automatically_after=Duration.days(ROTATION_DAYS),
            hosted_rotation=sm.HostedRotation.postgre_sql_multi_user(
                master_secret=self.secret,
                function_name=rotation_function,
                vpc=vpc,
                vpc_subnets=subnets,
                security_groups=[rotation_sg],
                exclude_characters=PASSWORD_EXCLUDE,
            ),
        )
        # The first rotation runs at creation and clones the user the bootstrap creates.
        self.replication_rotation.node.add_dependency(
            self.bootstrap_resource, self.replication_rotation_log_group
        )
        self.replication_secret_arn = self.replication_secret.secret_arn


def parameters(major: int) -> dict[str, str]:
    """The parameter group's values, with connection logging in the form this major takes."""
    return {**PARAMETERS, **connection_logging(major)}


def secret_read_statements(
    secret_arns: str | Sequence[str], key_arn: str
) -> list[iam.PolicyStatement]:
    """Least-privilege statements to read the given secrets, encrypted with one key."""
    return [
        iam.PolicyStatement(
            sid="ReadDatabaseSecret",
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[secret_arns] if isinstance(secret_arns, str) else list(secret_arns),
        ),
        iam.PolicyStatement(
            sid="DecryptDatabaseSecret",
            actions=["kms:Decrypt"],
            resources=[key_arn],
            conditions={"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}},
        ),
    ]
