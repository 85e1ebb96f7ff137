"""Lambda entry point of the RPO monitor (one-minute schedule).

Publishes ``RpoSeconds`` = now - the instance's ``LatestRestorableTime`` (how much committed
data a point-in-time restore would lose right now) as a CloudWatch metric in embedded metric
format (Powertools): one JSON log line, no ``PutMetricData`` permission needed. Dimensions:
``service`` (``rpo-monitor``) and ``Environment``. An instance without a restorable time
(being created, or backups off) emits no data point, and the alarm treats missing data as
breaching.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runtime.rpo_monitor import contract

NAMESPACE = contract.NAMESPACE
SERVICE = contract.SERVICE


def rpo_seconds(latest_restorable: datetime | None, now: datetime) -> float | None:
    if latest_restorable is None:
        return None
    return max(0.0, (now - latest_restorable).total_seconds())


def measure(rds: Any, env: Mapping[str, str], now: datetime) -> dict[str, Any]:
    instance = env.get(contract.ENV_DB_INSTANCE_ID)
    environment = env.get(contract.ENV_ENVIRONMENT_SUFFIX)
    if not instance or not environment:
        raise ValueError("environment variables DB_INSTANCE_ID and ENVIRONMENT_SUFFIX are required")
    [db] = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"]
    rpo = rpo_seconds(db.get("LatestRestorableTime"), now)
    result: dict[str, Any] = {"instance": instance, "rpo_seconds": rpo}
    if rpo is None:
        print(json.dumps({"level": "WARNING", "message": "no latest restorable time", **result}))
        return result
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
    metrics.add_dimension(name=contract.ENVIRONMENT_DIMENSION, value=environment)
    metrics.add_metric(name=contract.RPO_SECONDS, unit=MetricUnit.Seconds, value=rpo)
    metrics.flush_metrics()
    return result


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:  # pragma: no cover
    import boto3

    started = time.monotonic()
    result = measure(boto3.client("rds"), os.environ, datetime.now(UTC))
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
