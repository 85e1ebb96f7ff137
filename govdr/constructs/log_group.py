"""Log groups the platform owns: KMS-encrypted, kept >= 1 year, deleted with the stack."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

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


@dataclass(frozen=True)
class LogSettings:
    """How every platform log group is kept: under ``key`` (a CMK), for ``retention_days`` (one
    of CloudWatch Logs' retention periods of a year or more), and retained with the stack's data
    (the prod switch) or deleted with the stack."""

    key: kms.IKey
    retention_days: int
    retain: bool


def encrypted_log_group(
    scope: Construct, id_: str, *, log_group_name: str, settings: LogSettings
) -> logs.LogGroup:
    """Create a log group before the service that writes to it would create an unencrypted one.

    Services such as RDS log exports and Lambda create their log group on first write, without
    encryption or retention and outside the stack; creating it here first keeps all three.
    """
    return logs.LogGroup(
        scope,
        id_,
        log_group_name=log_group_name,
        encryption_key=settings.key,
        retention=_RETENTION[settings.retention_days],
        removal_policy=RemovalPolicy.RETAIN if settings.retain else RemovalPolicy.DESTROY,
    )
