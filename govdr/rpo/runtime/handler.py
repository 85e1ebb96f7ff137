"""Lambda entry point of the RPO monitor (one-minute schedule).

Publishes ``RpoSeconds`` = now - the instance's ``LatestRestorableTime`` (how much committed
data a point-in-time restore would lose right now) as a CloudWatch metric in embedded metric
format (Powertools): one JSON log line, no ``PutMetricData`` permission needed. Dimensions:
``service`` (``rpo-monitor``) and ``Environment``. An instance without a restorable time
(being created, or backups off) emits no data point, and the alarm treats missing data as
breaching.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from govdr.rpo import contract

NAMESPACE = contract.NAMESPACE
SERVICE = contract.SERVICE
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def rpo_seconds(latest_restorable: datetime | None, now: datetime) -> float | None:
    if latest_restorable is None:
        return None
    return max(0.0, (now - latest_restorable).total_seconds())


def measure(rds: Any, env: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """The instance's RPO now, added to ``metrics`` (published when the handler returns)."""
    instance = env.get(contract.ENV_DB_INSTANCE_ID)
    environment = env.get(contract.ENV_ENVIRONMENT_SUFFIX)
    if not instance or not environment:
        raise ValueError("environment variables DB_INSTANCE_ID and ENVIRONMENT_SUFFIX are required")
    [db] = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"]
    rpo = rpo_seconds(db.get("LatestRestorableTime"), now)
    result: dict[str, Any] = {"instance": instance, "rpo_seconds": rpo}
    if rpo is None:
        logger.warning("no latest restorable time", extra=result)
        return result
    metrics.add_dimension(name=contract.ENVIRONMENT_DIMENSION, value=environment)
    metrics.add_metric(name=contract.RPO_SECONDS, unit=MetricUnit.Seconds, value=rpo)
    return result


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    import boto3

    started = time.monotonic()
    try:
        result = measure(boto3.client("rds"), os.environ, datetime.now(UTC))
    except ValueError as exc:
        # One line in the log; the invocation fails (the Errors metric) without a stack trace.
        logger.error("the function's configuration is refused: %s", exc)
        raise ValueError(str(exc)) from None
    result["seconds"] = round(time.monotonic() - started, 3)
    logger.info("rpo measured", extra=result)
    return result
