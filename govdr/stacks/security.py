"""Encryption nested stack: one customer-managed key per data domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Aws, NestedStack
from aws_cdk import aws_kms as kms
from constructs import Construct

from govdr.config import DrConfig
from govdr.constructs.service_key import ServiceKey
from govdr.naming import alias


class SecurityStack(NestedStack):
    """Separate keys keep blast radius small: revoking one domain's key leaves the others."""

    def __init__(self, scope: Construct, id_: str, *, config: DrConfig) -> None:
        super().__init__(
            scope, id_, description=f"govdr encryption keys ({config.environment_suffix})"
        )
        suffix = config.environment_suffix
        retain = config.retain_data

        def key(
            id_: str,
            short: str,
            description: str,
            *,
            via_services: Sequence[str] = (),
            service_principals: Mapping[str, Mapping[str, Any] | None] | None = None,
        ) -> kms.IKey:
            return ServiceKey(
                self,
                id_,
                alias_name=alias(short, suffix),
                description=f"govdr: {description}",
                via_services=via_services,
                service_principals=service_principals,
                retain=retain,
            ).key

        self.database_key = key(
            "DatabaseKey",
            "rds",
            "RDS storage, automated backups, snapshots, Performance Insights",
            via_services=["rds"],
        )
        self.secrets_key = key(
            "SecretsKey",
            "secrets",
            "Secrets Manager database credentials",
            via_services=["secretsmanager"],
        )
        self.file_system_key = key(
            "FileSystemKey",
            "efs",
            "EFS transaction-log archive",
            via_services=["elasticfilesystem"],
        )
        self.logs_key = key(
            "LogsKey",
            "logs",
            "CloudWatch Logs log groups of the platform",
            service_principals={
                f"logs.{Aws.REGION}.amazonaws.com": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                        )
                    }
                }
            },
        )
        self.audit_key = key(
            "AuditKey",
            "audit",
            "CloudTrail log files and the audit bucket",
            via_services=["s3"],
            service_principals={
                "cloudtrail.amazonaws.com": {
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": (
                            f"arn:{Aws.PARTITION}:cloudtrail:*:{Aws.ACCOUNT_ID}:trail/*"
                        )
                    }
                }
            },
        )
        # CloudWatch alarms and RDS event notifications publish to the encrypted topic
        # (EventBridge's grant is added by its rule target); AWS documents no source
        # condition for these service principals.
        self.alarms_key = key(
            "AlarmsKey",
            "alarms",
            "SNS alarm and event notifications",
            service_principals={
                "cloudwatch.amazonaws.com": None,
                "events.rds.amazonaws.com": None,
            },
        )
        self.backup_key = key(
            "BackupKey",
            "backup",
            "AWS Backup vault recovery points",
            via_services=["backup"],
        )
