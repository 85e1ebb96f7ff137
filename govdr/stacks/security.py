"""Encryption nested stack: one customer-managed key per data domain."""

from __future__ import annotations

from aws_cdk import NestedStack
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

        self.database_key: kms.IKey = ServiceKey(
            self,
            "DatabaseKey",
            alias_name=alias("rds", suffix),
            description="govdr: RDS storage, automated backups, snapshots, Performance Insights",
            via_services=["rds"],
            retain=retain,
        ).key
        self.secrets_key: kms.IKey = ServiceKey(
            self,
            "SecretsKey",
            alias_name=alias("secrets", suffix),
            description="govdr: Secrets Manager database credentials",
            via_services=["secretsmanager"],
            retain=retain,
        ).key
        self.file_system_key: kms.IKey = ServiceKey(
            self,
            "FileSystemKey",
            alias_name=alias("efs", suffix),
            description="govdr: EFS transaction-log archive",
            via_services=["elasticfilesystem"],
            retain=retain,
        ).key
