"""The RPO monitor Lambda: LatestRestorableTime in, an embedded-metric-format record out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from runtime.rpo_monitor import handler

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
ENV = {"DB_INSTANCE_ID": "rds-qa7", "ENVIRONMENT_SUFFIX": "qa7"}


@pytest.fixture
def rds() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "rds", region_name="eu-central-2", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _instance(stubber: Stubber, **fields: Any) -> None:
    stubber.add_response(
        "describe_db_instances",
        {"DBInstances": [{"DBInstanceIdentifier": "rds-qa7", **fields}]},
        {"DBInstanceIdentifier": "rds-qa7"},
    )


def test_rpo_is_published_as_an_emf_metric(
    rds: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    client, stubber = rds
    _instance(stubber, LatestRestorableTime=NOW - timedelta(seconds=275))
    assert handler.measure(client, ENV, NOW) == {"instance": "rds-qa7", "rpo_seconds": 275.0}
    [record] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "govdr/dr"
    assert directive["Metrics"] == [{"Name": "RpoSeconds", "Unit": "Seconds"}]
    assert sorted(directive["Dimensions"][0]) == ["Environment", "service"]
    assert record["RpoSeconds"] == [275.0]
    assert (record["service"], record["Environment"]) == ("rpo-monitor", "qa7")


def test_no_restorable_time_publishes_nothing(
    rds: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    client, stubber = rds
    _instance(stubber)
    assert handler.measure(client, ENV, NOW)["rpo_seconds"] is None
    out = capsys.readouterr().out
    assert '"_aws"' not in out
    assert "no latest restorable time" in out


def test_rpo_never_negative_and_settings_are_named() -> None:
    assert handler.rpo_seconds(NOW + timedelta(seconds=2), NOW) == 0.0
    with pytest.raises(ValueError, match="DB_INSTANCE_ID and ENVIRONMENT_SUFFIX"):
        handler.measure(None, {}, NOW)
