"""Log groups the platform owns: KMS-encrypted, kept >= 1 year, deleted with the stack."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from govdr.config import DrConfig

_RETENTION = {
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def encrypted_log_group(
    scope: Construct, id_: str, *, log_group_name: str, key: kms.IKey, config: DrConfig
) -> logs.LogGroup:
    """Create a log group before the service that writes to it would create an unencrypted one.

    Services such as RDS log exports and Lambda create their log group on first write, without
    encryption or retention and outside the stack; creating it here first keeps all three.
    """
    return logs.LogGroup(
        scope,
        id_,
        log_group_name=log_group_name,
        encryption_key=key,
        retention=_RETENTION[config.log_retention_days],
        removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
    )
