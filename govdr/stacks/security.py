"""Encryption nested stack: one customer-managed key per data domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws, NestedStack
from aws_cdk import aws_kms as kms
from constructs import Construct

from govdr.config import DrConfig
from govdr.constructs.service_key import AccountUse, ServiceKey, ServiceUse
from govdr.naming import alias, name, slot_name
from govdr.txlog.runtime.integrity import CONTEXT_PREFIX, IDENTITY_KEYS

CLOUDTRAIL_KEY_DOC = (
    "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/"
    "create-kms-key-policy-for-cloudtrail.html"
)
LOGS_KEY_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html"
SNS_PUBLISHER_DOC = (
    "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#sns-what-permissions-for-sse"
)
# The actions each SNS publisher needs on the topic's key (no source condition is documented).
SNS_PUBLISHER_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")


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
            service_uses: Sequence[ServiceUse] = (),
            account_uses: Sequence[AccountUse] = (),
        ) -> kms.IKey:
            return ServiceKey(
                self,
                id_,
                alias_name=alias(short, suffix),
                description=f"govdr: {description}",
                via_services=via_services,
                service_uses=service_uses,
                account_uses=account_uses,
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
        # CloudWatch Logs encrypts and decrypts with the log group's ARN as encryption context;
        # AWS's pattern also lists kms:Describe* under that condition, which a DescribeKey
        # request never carries (it would grant nothing), so it is left out.
        self.logs_key = key(
            "LogsKey",
            "logs",
            "CloudWatch Logs log groups of the platform",
            service_uses=[
                ServiceUse(
                    sid="LogsEncryptLogGroups",
                    principal=f"logs.{Aws.REGION}.amazonaws.com",
                    actions=(
                        "kms:Decrypt",
                        "kms:Encrypt",
                        "kms:GenerateDataKey*",
                        "kms:ReEncrypt*",
                    ),
                    doc=LOGS_KEY_DOC,
                    conditions={
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": (
                                f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                            )
                        }
                    },
                    notes={
                        "MISMATCHED_TYPE": "AWS documents this key-policy statement with an "
                        "ARN operator (ArnLike/ArnEquals) on kms:EncryptionContext:aws:logs:arn "
                        f"({LOGS_KEY_DOC}); the service authorization reference types "
                        "encryption-context keys as String, and an ARN operator compares the "
                        "log group ARN part by part, which is what is meant here",
                    },
                )
            ],
        )
        self.audit_key = key(
            "AuditKey",
            "audit",
            "CloudTrail log files and the audit bucket",
            via_services=["s3"],
            service_uses=_cloudtrail_uses(name("trail", suffix)) if config.creates_trail else (),
        )
        # CloudWatch alarms and RDS event notifications publish to the encrypted topic
        # (EventBridge's statement, the same two actions, is added by its rule target).
        self.alarms_key = key(
            "AlarmsKey",
            "alarms",
            "SNS alarm and event notifications",
            service_uses=[
                ServiceUse(
                    sid="PublishCloudWatchAlarms",
                    principal="cloudwatch.amazonaws.com",
                    actions=SNS_PUBLISHER_ACTIONS,
                    doc=SNS_PUBLISHER_DOC,
                ),
                ServiceUse(
                    sid="PublishRdsEvents",
                    principal="events.rds.amazonaws.com",
                    actions=SNS_PUBLISHER_ACTIONS,
                    doc=SNS_PUBLISHER_DOC,
                ),
            ],
        )
        self.txlog_key = key(
            "TxlogIntegrityKey",
            "txlog",
            "transaction-log archive integrity seals (HMAC data keys)",
            account_uses=[txlog_integrity_use(config)],
        )
        self.backup_key = key(
            "BackupKey",
            "backup",
            "AWS Backup vault recovery points",
            via_services=["backup"],
        )


TXLOG_INTEGRITY_DOC = "https://docs.aws.amazon.com/kms/latest/developerguide/encrypt_context.html"


def txlog_integrity_condition(config: DrConfig) -> dict[str, dict[str, Any]]:
    """Requests for the archive's key must carry its encryption context, naming this
    environment's slot (govdr/txlog/runtime/integrity.py: encryption_context)."""
    return {
        "StringEquals": {
            "kms:CallerAccount": Aws.ACCOUNT_ID,
            f"kms:EncryptionContext:{CONTEXT_PREFIX}slot": slot_name(config.environment_suffix),
        },
        "ForAllValues:StringEquals": {
            "kms:EncryptionContextKeys": [f"{CONTEXT_PREFIX}{k}" for k in IDENTITY_KEYS]
        },
    }


def txlog_integrity_use(config: DrConfig) -> AccountUse:
    """The archiver generates the archive's data key and decrypts it at each run; operators
    decrypt it to verify and replay. Both need kms:GenerateDataKey / kms:Decrypt in their own
    IAM policy too; no service principal uses this key."""
    return AccountUse(
        sid="ArchiveIntegrityKeysOfThisEnvironment",
        actions=("kms:Decrypt", "kms:GenerateDataKey"),
        conditions=txlog_integrity_condition(config),
        doc=TXLOG_INTEGRITY_DOC,
    )


def _cloudtrail_uses(trail_name: str) -> list[ServiceUse]:
    """The statements AWS documents for a trail's key, each tied to our one trail.

    GenerateDataKey requests of CloudTrail carry the trail as encryption context and as
    aws:SourceArn; DescribeKey (checked at CreateTrail/UpdateTrail) and the Decrypt that
    an S3 Bucket Key needs carry no CloudTrail encryption context, so they are conditioned
    on aws:SourceArn alone.
    """
    trail_arn = f"arn:{Aws.PARTITION}:cloudtrail:{Aws.REGION}:{Aws.ACCOUNT_ID}:trail/{trail_name}"
    source = {"aws:SourceArn": trail_arn}
    return [
        ServiceUse(
            sid="CloudTrailEncryptLogs",
            principal="cloudtrail.amazonaws.com",
            actions=("kms:GenerateDataKey*",),
            doc=CLOUDTRAIL_KEY_DOC,
            conditions={
                "StringEquals": source,
                "StringLike": {
                    "kms:EncryptionContext:aws:cloudtrail:arn": (
                        f"arn:{Aws.PARTITION}:cloudtrail:*:{Aws.ACCOUNT_ID}:trail/*"
                    )
                },
            },
        ),
        ServiceUse(
            sid="CloudTrailDescribeKey",
            principal="cloudtrail.amazonaws.com",
            actions=("kms:DescribeKey",),
            doc=CLOUDTRAIL_KEY_DOC,
            conditions={"StringEquals": source},
        ),
        ServiceUse(
            sid="CloudTrailDecryptForBucketKey",
            principal="cloudtrail.amazonaws.com",
            actions=("kms:Decrypt",),
            doc=CLOUDTRAIL_KEY_DOC,
            conditions={"StringEquals": source},
        ),
    ]
