"""Database nested stack: RDS for PostgreSQL Multi-AZ, its master secret and rotation.

The secrets, their target attachments, their rotation functions and schedules stay in this
one stack: compliance rules look for a secret's rotation in the secret's own stack. Rotation
is done by govdr's own function (govdr/credentials/runtime) on Python 3.14 in the VPC, not by
hosted rotation, whose ``AWS::SecretsManager`` transform creates a python3.10 function.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, CustomResource, Duration, NestedStack, RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from govdr.config import DATABASE_NAME, DrConfig
from govdr.constructs.custom_resources import service_timeout
from govdr.constructs.log_group import encrypted_log_group
from govdr.constructs.nag_notes import accept_findings
from govdr.constructs.provider import HandlerProvider
from govdr.constructs.python_bundle import bundled_code
from govdr.constructs.scanner_notes import CUSTOM_RESOURCE_OUTCOME, ROTATION_OUTCOME
from govdr.constructs.service_role import ServiceRole
from govdr.constructs.vpc_function import VpcFunction
from govdr.credentials.contract import (
    ALTERNATING_USERS,
    ENV_EXCLUDE_CHARACTERS,
    ENV_ROTATION_STRATEGY,
    SINGLE_USER,
)
from govdr.engine import connection_logging
from govdr.naming import name, slot_name
from govdr.stacks.settings import log_settings
from govdr.txlog import contract as txlog
from govdr.txlog.contract import DRILL_ROLE

MASTER_USERNAME = "govdr_admin"
# The archiver's own login: logical replication only, never the master credentials.
REPLICATION_USERNAME = "govdr_txlog"
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
        provider_sg: ec2.ISecurityGroup,
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
            parameters=parameters(
                int(config.engine_major),
                config.output_plugin_libraries,
                slot_wal_keep_mib=config.slot_wal_keep_limit_mib,
            ),
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
        # log group in any region to the one RDSOSMetrics group of this account and region
        # (Enhanced Monitoring writes there, a stream per instance named by its resource ID:
        # https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Monitoring.OS.CloudWatchLogs.html).
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
        accept_findings(
            self.monitoring_role.policy,
            [
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
                "<AWS::AccountId>:log-group:RDSOSMetrics:log-stream:*]"
            ],
            "RDS names enhanced-monitoring log streams after the instance's resource ID, which "
            "exists only after the instance that needs this role; scoped to the one RDSOSMetrics "
            "group of this account and region",
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
                settings=log_settings(config, logs_key),
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
        if not config.deletion_protection:
            accept_findings(
                self.instance,
                [
                    "AwsSolutions-RDS10",
                    "NIST.800.53.R5-RDSInstanceDeletionProtectionEnabled",
                    "HIPAA.Security-RDSInstanceDeletionProtectionEnabled",
                ],
                "destroyable by mission (every pull request deploys and deletes a copy): "
                "deletion protection is a config switch (-c production=true or "
                "-c deletionProtection=true), on in prod",
            )
        if config.pins_minor_version:
            accept_findings(
                self.instance,
                ["HIPAA.Security-RDSAutomaticMinorVersionUpgradeEnabled"],
                f"engineVersion {config.engine_version} pins a minor on purpose (the operator's "
                "knob): automatic upgrades would move the instance past the template, and the "
                "next update would request a downgrade; minor upgrades are then made by raising "
                "the knob",
            )
        accept_findings(
            self.instance,
            ["AwsSolutions-RDS11"],
            "port 5432 is reachable only from two security groups inside isolated subnets; a "
            "non-default port adds no control, and operator tools read the port from the outputs",
        )
        assert self.instance.secret is not None
        # The attachment adds host, port and engine to the secret; rotation must use it.
        self.secret: sm.ISecret = self.instance.secret

        self._replication_user(
            config, vpc, function_subnets, bootstrap_sg, provider_sg, secrets_key, logs_key
        )

        # The first rotation runs when the schedule is created. It starts after the bootstrap
        # answered, which reads the master secret and logs in with it (both secrets).
        self.rotation_function, self.rotation = self._rotation(
            config,
            secret=self.secret,
            function_type="rds-rotation",
            strategy=SINGLE_USER,
            description="Rotates the database master secret (single user) every 30 days",
            vpc=vpc,
            subnets=function_subnets,
            rotation_sg=rotation_sg,
            secrets_key=secrets_key,
            logs_key=logs_key,
        )
        self.replication_rotation_function, self.replication_rotation = self._rotation(
            config,
            secret=self.replication_attached,
            function_type="rds-txlog-rotation",
            strategy=ALTERNATING_USERS,
            description="Rotates the archiver's login (alternating users) every 30 days",
            vpc=vpc,
            subnets=function_subnets,
            rotation_sg=rotation_sg,
            secrets_key=secrets_key,
            logs_key=logs_key,
            master_secret=self.secret,
        )
        for schedule in (self.rotation, self.replication_rotation):
            schedule.node.add_dependency(self.bootstrap_resource)

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

        # The drills' login (govdr drill failover --auth iam): rds-db:connect as govdr_drill on
        # this instance only, named by its DbiResourceId. The restore drill's restored
        # instance has another id and uses the master secret (govdr.drills.commands).
        resource_id = self.instance.instance_resource_id  # Fn::GetAtt <instance>.DbiResourceId
        assert resource_id is not None
        self.drill_connect_policy = iam.ManagedPolicy(
            self,
            "DrillConnectPolicy",
            managed_policy_name=name("rds-drill-connect", suffix),
            description="Connect to the govdr database as govdr_drill with an IAM token",
            statements=[drill_connect_statement(resource_id)],
        )

    def _replication_user(
        self,
        config: DrConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        bootstrap_sg: ec2.ISecurityGroup,
        provider_sg: ec2.ISecurityGroup,
        secrets_key: kms.IKey,
        logs_key: kms.IKey,
    ) -> None:
        """The archiver's login: its own secret (CMK), created in the database by a bootstrap
        custom resource, then rotated every 30 days with alternating users."""
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
        self.replication_attached: sm.ISecret = attached

        self.bootstrap = VpcFunction(
            self,
            "TxlogBootstrap",
            environment_suffix=config.environment_suffix,
            function_type="txlog-bootstrap",
            description="Creates the archiver's replication user; drops its slot on teardown",
            code=bundled_code("txlog"),
            handler="govdr.txlog.runtime.bootstrap.handler",
            statements=[
                *secret_read_statements(
                    [self.master_secret.secret_arn, self.replication_secret.secret_arn],
                    secrets_key.key_arn,
                ),
                # A Delete drops the slot only while its own stack is being deleted
                # (DescribeStacks takes the stack's ARN as resource:
                # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudformation.html).
                iam.PolicyStatement(
                    sid="ReadOwnStackStatus",
                    actions=["cloudformation:DescribeStacks"],
                    resources=[Aws.STACK_ID],
                ),
            ],
            vpc=vpc,
            subnets=subnets,
            # Its own group: the database, Secrets Manager and CloudFormation (the framework
            # answers).
            security_group=bootstrap_sg,
            logs=log_settings(config, logs_key),
            timeout=Duration.seconds(BOOTSTRAP_TIMEOUT_SECONDS),
            # The event is checked against these: a request naming another slot or secret
            # changes nothing.
            environment={
                txlog.ENV_BOOTSTRAP_SLOT_NAME: self.slot_name,
                txlog.ENV_MASTER_SECRET_ARN: self.master_secret.secret_arn,
                txlog.ENV_REPLICATION_SECRET_ARN: self.replication_secret.secret_arn,
            },
        )
        self.bootstrap.without_dead_letter_queue(CUSTOM_RESOURCE_OUTCOME)
        self.bootstrap_provider = HandlerProvider(
            self,
            "TxlogBootstrapProvider",
            handler=self.bootstrap,
            vpc=vpc,
            subnets=subnets,
            security_group=provider_sg,
        )
        # Its logical ID is not the one of the versions that answered CloudFormation from the
        # handler itself: CloudFormation cannot change a custom resource's ServiceToken ("Updates
        # aren't supported",
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-cloudformation-customresource.html),
        # so an existing stack replaces it, and the old one's Delete, sent while the stack is
        # UPDATE_COMPLETE_CLEANUP_IN_PROGRESS, drops nothing (govdr/txlog/runtime/bootstrap.py).
        self.bootstrap_resource = CustomResource(
            self,
            "TxlogBootstrapCustomResource",
            service_token=self.bootstrap_provider.service_token,
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

        self.replication_secret_arn = self.replication_secret.secret_arn

    def _rotation(
        self,
        config: DrConfig,
        *,
        secret: sm.ISecret,
        function_type: str,
        strategy: str,
        description: str,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        rotation_sg: ec2.ISecurityGroup,
        secrets_key: kms.IKey,
        logs_key: kms.IKey,
        master_secret: sm.ISecret | None = None,
    ) -> tuple[VpcFunction, sm.RotationSchedule]:
        """A rotation function for one secret, with the permissions AWS documents for it
        (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotating-secrets-required-permissions-function.html),
        and the schedule that has Secrets Manager invoke it every ROTATION_DAYS."""
        statements = rotation_statements(
            secret.secret_arn,
            secrets_key.key_arn,
            None if master_secret is None else master_secret.secret_arn,
        )
        function = VpcFunction(
            self,
            f"{function_type.title().replace('-', '')}Function",
            environment_suffix=config.environment_suffix,
            function_type=function_type,
            description=description,
            code=bundled_code("credentials"),
            handler="govdr.credentials.runtime.handler.handler",
            statements=statements,
            vpc=vpc,
            subnets=subnets,
            # rotation-sg reaches the database (5432) and the interface endpoints (443),
            # Secrets Manager's among them (govdr/stacks/network.py).
            security_group=rotation_sg,
            logs=log_settings(config, logs_key),
            timeout=Duration.minutes(1),
            environment={
                ENV_ROTATION_STRATEGY: strategy,
                ENV_EXCLUDE_CHARACTERS: PASSWORD_EXCLUDE,
                # No TLS setting: govdr/lambda_support/pg_tls.py always verifies the server
                # (verify-full with the pinned RDS roots in the bundle, require_auth=scram-sha-256).
            },
        )
        function.without_dead_letter_queue(ROTATION_OUTCOME)
        # Scheduled on a reference to the secret: with the secret itself, CDK would grant the
        # function the secrets key in the key policy of the security stack, which would then
        # depend on this stack (a cycle). The role's own policy holds that grant instead.
        reference = sm.Secret.from_secret_complete_arn(
            self, f"{function_type.title().replace('-', '')}Secret", secret.secret_arn
        )
        schedule = reference.add_rotation_schedule(
            "Rotation",
            automatically_after=Duration.days(ROTATION_DAYS),
            rotation_lambda=function.function,
        )
        # What add_rotation_schedule adds to the secret itself: its resource policy denies
        # deleting it to the account root (kept by the reference's schedule otherwise).
        secret.deny_account_root_delete()
        # CDK's schedule adds the invoke permission for secretsmanager.amazonaws.com; AWS
        # recommends aws:SourceAccount against the confused deputy, and aws:SourceArn ties
        # the function to its one secret (same page as above).
        permissions = [
            child
            for child in function.function.node.children
            if isinstance(child, lambda_.CfnPermission)
        ]
        assert len(permissions) == 1, "one invoke permission per rotation function"
        permissions[0].add_property_override("SourceAccount", Aws.ACCOUNT_ID)
        permissions[0].add_property_override("SourceArn", secret.secret_arn)
        return function, schedule


def rotation_statements(
    secret_arn: str, key_arn: str, master_secret_arn: str | None
) -> list[iam.PolicyStatement]:
    """What a rotation function may do: the four rotation calls on its one secret, random
    passwords, the secrets key through Secrets Manager and, with alternating users, reading
    the master secret."""
    statements = [
        iam.PolicyStatement(
            sid="RotateSecret",
            actions=[
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecretVersionStage",
            ],
            resources=[secret_arn],
        ),
        iam.PolicyStatement(
            sid="GenerateRandomPassword",
            actions=["secretsmanager:GetRandomPassword"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="UseSecretsKey",
            # Decrypt for GetSecretValue, GenerateDataKey for PutSecretValue; the key policy
            # allows the account's principals through Secrets Manager (govdr.constructs.
            # service_key). https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[key_arn],
            conditions={
                "StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}
            },
        ),
    ]
    if master_secret_arn is not None:
        statements.append(
            iam.PolicyStatement(
                sid="ReadMasterSecret",
                actions=["secretsmanager:GetSecretValue"],
                resources=[master_secret_arn],
            )
        )
    return statements


OUTPUT_PLUGINS_PARAMETER = "output_plugin_libraries"
# The most WAL (in MB, PostgreSQL's unit: MiB) a replication slot may keep: past it, the next
# checkpoint invalidates the slot (wal_status 'lost') and removes the WAL, instead of letting a
# stalled reader fill the storage. Dynamic, PostgreSQL 13 and later:
# https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-MAX-SLOT-WAL-KEEP-SIZE
# (RDS for PostgreSQL parameters:
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Appendix.PostgreSQL.CommonDBATasks.Parameters.html)
SLOT_WAL_KEEP_PARAMETER = "max_slot_wal_keep_size"


def parameters(
    major: int, output_plugins: str | None = None, *, slot_wal_keep_mib: int
) -> dict[str, str]:
    """The parameter group's values, with connection logging in the form this major takes,
    the slot's WAL cap, and ``output_plugin_libraries`` when given (engine minors that restrict
    which output plugins a non-superuser replication login may use; ``govdr preflight`` checks
    whether the family has it: OUTPUT_PLUGIN_DOC in govdr/preflight/checks.py).
    """
    chosen = {
        **PARAMETERS,
        **connection_logging(major),
        SLOT_WAL_KEEP_PARAMETER: str(slot_wal_keep_mib),
    }
    if output_plugins is not None:
        chosen[OUTPUT_PLUGINS_PARAMETER] = output_plugins
    return chosen


def drill_connect_statement(dbi_resource_id: str) -> iam.PolicyStatement:
    """``rds-db:connect`` as the drills' user on one instance (IAM database authentication;
    the instance has it on): arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user>.
    https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html
    """
    return iam.PolicyStatement(
        sid="ConnectAsDrillUser",
        actions=["rds-db:connect"],
        resources=[
            f"arn:{Aws.PARTITION}:rds-db:{Aws.REGION}:{Aws.ACCOUNT_ID}:dbuser:"
            f"{dbi_resource_id}/{DRILL_ROLE}"
        ],
    )


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
