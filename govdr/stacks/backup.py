"""Backup nested stack (FedRAMP CP-9): encrypted vault, plan, and teardown of the vault.

The plan's selections live beside the resources they cover (Database and Storage stacks).
"""

from __future__ import annotations

from aws_cdk import Aws, CustomResource, Duration, NestedStack, RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from govdr.backup import contract as cleaner_contract
from govdr.config import DrConfig
from govdr.constructs.custom_resources import service_timeout
from govdr.constructs.nag_notes import accept_findings
from govdr.constructs.provider import HandlerProvider
from govdr.constructs.python_bundle import bundled_code
from govdr.constructs.scanner_notes import CUSTOM_RESOURCE_OUTCOME
from govdr.constructs.service_role import ServiceRole
from govdr.constructs.vpc_function import VpcFunction
from govdr.naming import name
from govdr.stacks.settings import log_settings

# Emptying a vault waits for deletions; the handler returns 30 s before this runs out. Below the
# Provider framework's own 15 minutes, so that a handler that times out is still answered FAILED
# by the framework, which outlives it.
VAULT_CLEANER_TIMEOUT_SECONDS = 840
CLEANER_FUNCTION_TYPE = "backup-vault-cleaner"  # VpcFunction names its role "<type>-role-<suffix>"


class BackupStack(NestedStack):
    """Vault under a CMK and a daily plan with continuous backup (PITR) for RDS."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DrConfig,
        vpc: ec2.IVpc,
        function_subnets: ec2.SubnetSelection,
        ops_sg: ec2.ISecurityGroup,
        provider_sg: ec2.ISecurityGroup,
        backup_key: kms.IKey,
        logs_key: kms.IKey,
    ) -> None:
        super().__init__(scope, id_, description=f"govdr backups ({config.environment_suffix})")
        suffix = config.environment_suffix

        self.vault = backup.BackupVault(
            self,
            "Vault",
            backup_vault_name=name("backup-vault", suffix),
            encryption_key=backup_key,
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )

        copy_actions = []
        if config.backup_copy_vault_arn:
            copy_actions.append(
                backup.BackupPlanCopyActionProps(
                    destination_backup_vault=backup.BackupVault.from_backup_vault_arn(
                        self, "CopyVault", config.backup_copy_vault_arn
                    ),
                    delete_after=Duration.days(config.backup_retention_days),
                )
            )
        self.plan = backup.BackupPlan(
            self,
            "Plan",
            backup_plan_name=name("backup-plan", suffix),
            backup_vault=self.vault,
            backup_plan_rules=[
                backup.BackupPlanRule(
                    rule_name="daily-with-continuous",
                    # Continuous backup gives RDS point-in-time recovery from the vault;
                    # resources without continuous support (EFS) get the daily snapshot.
                    enable_continuous_backup=True,
                    schedule_expression=events.Schedule.cron(hour="3", minute="0"),
                    start_window=Duration.hours(1),
                    completion_window=Duration.hours(4),
                    delete_after=Duration.days(config.backup_retention_days),
                    copy_actions=copy_actions or None,
                )
            ],
        )
        self.selection_role = iam.Role(
            self,
            "SelectionRole",
            role_name=name("backup-role", suffix),
            description="AWS Backup creates and restores recovery points of the selected resources",
            assumed_by=iam.ServicePrincipal("backup.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AWSBackupServiceRolePolicyForBackup"
                ),
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AWSBackupServiceRolePolicyForRestores"
                ),
            ],
        )
        accept_findings(
            self.selection_role,
            [
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSBackupServiceRolePolicyForBackup]",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSBackupServiceRolePolicyForRestores]",
            ],
            "AWS Backup's service-role policies, maintained by AWS for every resource type it "
            "backs up and restores; a copy would freeze it and break with new backup features",
        )

        self.vault_cleaner_role: ServiceRole | None = None
        self.vault_cleaner_function: lambda_.Function | None = None
        self.vault_cleaner: CustomResource | None = None
        if not config.retain_data:
            # With the prod switch the vault is retained: nothing may empty it.
            self._vault_cleaner(config, vpc, function_subnets, ops_sg, provider_sg, logs_key)
        self._deny_recovery_point_deletion()

    def _deny_recovery_point_deletion(self) -> None:
        """Vault access policy: only this environment's cleaner may delete recovery points.

        A Deny for every principal except the cleaner role (aws:PrincipalArn is the role's ARN
        for its sessions); with the prod switch there is no cleaner and the Deny has no
        exception. Only DeleteRecoveryPoint is denied, so the account can still change or
        remove the policy (PutBackupVaultAccessPolicy), and the plan's lifecycle still expires
        recovery points.
        https://docs.aws.amazon.com/aws-backup/latest/devguide/create-a-vault-access-policy.html
        https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
        https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-backup-backupvault.html#cfn-backup-backupvault-accesspolicy
        """
        conditions = None
        if self.vault_cleaner_role is not None:
            # Built from the role's name, not its GetAtt: the role's policy names the vault,
            # so a reference would make the vault and the role depend on each other.
            cleaner_arn = (
                f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{self.vault_cleaner_role_name}"
            )
            conditions = {"StringNotEquals": {"aws:PrincipalArn": cleaner_arn}}
        self.vault.add_to_access_policy(
            iam.PolicyStatement(
                sid="OnlyTheCleanerDeletesRecoveryPoints",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                # Vault access policies take no wildcard in Action.
                actions=["backup:DeleteRecoveryPoint"],
                resources=["*"],
                conditions=conditions,
            )
        )

    def _vault_cleaner(
        self,
        config: DrConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        ops_sg: ec2.ISecurityGroup,
        provider_sg: ec2.ISecurityGroup,
        logs_key: kms.IKey,
    ) -> None:
        """Empty the vault on stack deletion, or the vault blocks every teardown.

        The function empties only the vault named in its environment and only while its stack
        is DELETE_IN_PROGRESS (DescribeStacks on its own stack; DescribeStacks takes a stack
        ARN as resource: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudformation.html).
        """
        recovery_points = (
            f"arn:{Aws.PARTITION}:backup:{Aws.REGION}:{Aws.ACCOUNT_ID}:recovery-point:*"
        )
        cleaner = VpcFunction(
            self,
            "VaultCleaner",
            environment_suffix=config.environment_suffix,
            function_type=CLEANER_FUNCTION_TYPE,
            description="Empties the govdr backup vault when the stack is deleted",
            code=bundled_code("backup"),
            handler="govdr.backup.runtime.handler.handler",
            statements=[
                iam.PolicyStatement(
                    sid="ListAndDeleteRecoveryPoints",
                    actions=[
                        "backup:ListRecoveryPointsByBackupVault",
                        "backup:DeleteRecoveryPoint",
                    ],
                    resources=[self.vault.backup_vault_arn, recovery_points],
                ),
                iam.PolicyStatement(
                    sid="DeleteBackupSnapshotsOfRds",
                    actions=["rds:DeleteDBSnapshot"],
                    resources=[
                        f"arn:{Aws.PARTITION}:rds:{Aws.REGION}:{Aws.ACCOUNT_ID}"
                        ":snapshot:awsbackup:*"
                    ],
                ),
                iam.PolicyStatement(
                    sid="ReadOwnStackStatus",
                    actions=["cloudformation:DescribeStacks"],
                    resources=[Aws.STACK_ID],
                ),
                iam.PolicyStatement(
                    sid="StopBackupJobs",
                    # ListBackupJobs and StopBackupJob have no resource-level permissions.
                    actions=["backup:ListBackupJobs", "backup:StopBackupJob"],
                    resources=["*"],
                ),
            ],
            vpc=vpc,
            subnets=subnets,
            security_group=ops_sg,
            logs=log_settings(config, logs_key),
            timeout=Duration.seconds(VAULT_CLEANER_TIMEOUT_SECONDS),
            environment={
                cleaner_contract.ENV_VAULT_NAME: name("backup-vault", config.environment_suffix)
            },
        )
        cleaner.without_dead_letter_queue(CUSTOM_RESOURCE_OUTCOME)
        accept_findings(
            cleaner.role.policy,
            [
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:backup:<AWS::Region>:"
                "<AWS::AccountId>:recovery-point:*]",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:rds:<AWS::Region>:"
                "<AWS::AccountId>:snapshot:awsbackup:*]",
            ],
            "recovery points and AWS Backup's RDS snapshots get their IDs when a backup runs; "
            "deletion is further limited to the one vault by ListRecoveryPointsByBackupVault",
        )
        self.vault_cleaner_role = cleaner.role
        self.vault_cleaner_role_name = name(
            f"{CLEANER_FUNCTION_TYPE}-role", config.environment_suffix
        )
        self.vault_cleaner_function = cleaner.function
        self.vault_cleaner_provider = HandlerProvider(
            self,
            "VaultCleanerProvider",
            handler=cleaner,
            vpc=vpc,
            subnets=subnets,
            security_group=provider_sg,
        )
        # A new logical ID, as for the bootstrap (govdr/stacks/database.py): the ServiceToken of
        # the earlier versions cannot be updated; the old resource's Delete, during the update's
        # cleanup, empties nothing.
        self.vault_cleaner = CustomResource(
            self,
            "VaultCleanerCustomResource",
            service_token=self.vault_cleaner_provider.service_token,
            resource_type="Custom::BackupVaultCleaner",
            service_timeout=Duration.seconds(service_timeout(VAULT_CLEANER_TIMEOUT_SECONDS)),
            properties={"BackupVaultName": self.vault.backup_vault_name},
        )
        # Deleted before the cleaner runs: no plan can start a job into an emptied vault.
        self.plan.node.add_dependency(self.vault_cleaner)
