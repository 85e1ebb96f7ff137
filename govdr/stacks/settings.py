"""What the stacks hand the constructs, built once from the app's configuration: constructs take
these CDK-level settings, never the whole DrConfig."""

from __future__ import annotations

from aws_cdk import aws_kms as kms

from govdr.config import DrConfig
from govdr.constructs.log_group import LogSettings


def log_settings(config: DrConfig, key: kms.IKey) -> LogSettings:
    """Every platform log group: under the logs CMK, kept logRetentionDays, retained with the
    data under the prod switch."""
    return LogSettings(key=key, retention_days=config.log_retention_days, retain=config.retain_data)
