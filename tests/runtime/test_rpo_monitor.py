"""The RPO monitor Lambda: LatestRestorableTime in, an embedded-metric-format record out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from govdr.rpo.runtime import handler
from tests.support.lambda_context import LambdaTestContext, log_to_current_stdout

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


def _invoke(
    client: Any, monkeypatch: pytest.MonkeyPatch, env: dict[str, str] = ENV
) -> dict[str, Any]:
    """The Lambda entry point, with its environment and the stubbed RDS client."""
    for name in ("DB_INSTANCE_ID", "ENVIRONMENT_SUFFIX"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(boto3, "client", lambda service, **_: client)
    log_to_current_stdout(handler.logger, monkeypatch)
    result: dict[str, Any] = handler.handler({}, LambdaTestContext())
    return result


def test_rpo_is_published_as_an_emf_metric(
    rds: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stubber = rds
    latest = datetime.now(UTC) - timedelta(seconds=275)
    _instance(stubber, LatestRestorableTime=latest)
    result = _invoke(client, monkeypatch)
    assert result["instance"] == "rds-qa7"
    assert 275.0 <= result["rpo_seconds"] < 300.0
    [record] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "govdr/dr"
    assert directive["Metrics"] == [{"Name": "RpoSeconds", "Unit": "Seconds"}]
    assert sorted(directive["Dimensions"][0]) == ["Environment", "service"]
    assert record["RpoSeconds"] == [result["rpo_seconds"]]
    assert (record["service"], record["Environment"]) == ("rpo-monitor", "qa7")


def test_no_restorable_time_publishes_nothing(
    rds: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stubber = rds
    _instance(stubber)
    assert _invoke(client, monkeypatch)["rpo_seconds"] is None
    out = capsys.readouterr().out
    assert '"_aws"' not in out
    [warning] = [json.loads(x) for x in out.splitlines() if "no latest restorable time" in x]
    assert warning["level"] == "WARNING"
    assert warning["function_request_id"] == "req-1"  # the Lambda context is in every line


def test_rpo_never_negative_and_settings_are_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert handler.rpo_seconds(NOW + timedelta(seconds=2), NOW) == 0.0
    with pytest.raises(ValueError, match="DB_INSTANCE_ID and ENVIRONMENT_SUFFIX") as refused:
        _invoke(None, monkeypatch, env={})
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"level"' in x]
    assert line["level"] == "ERROR"
    assert "DB_INSTANCE_ID and ENVIRONMENT_SUFFIX" in line["message"]
