"""A custom-resource handler's side of the Provider framework, run behind the framework's own
code (tests/support/cdk_provider.py): hostile requests are refused in one line before the
handler changes anything, and what CloudFormation receives follows the handler's result."""

from __future__ import annotations

from typing import Any

import pytest

from govdr.backup.runtime import handler as cleaner
from govdr.lambda_support.custom_resource import (
    MAX_REASON_CHARS,
    CfnRequest,
    RequestFailed,
    success,
)
from tests.support.cdk_provider import answer, reason_of

STACK_ID = "arn:aws:cloudformation:eu-central-2:123456789012:stack/TapStackdev/1"


def _event(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "RequestType": "Create",
        "ResponseURL": url,
        "StackId": STACK_ID,
        "RequestId": "req-7",
        "LogicalResourceId": "VaultCleanerCustomResource",
        "ResourceProperties": {"BackupVaultName": "backup-vault-dev"},
        **fields,
    }


class _NoCalls:
    """An AWS client that fails the test on any call: a refused request calls nothing."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was called for a refused request")


def _cleaner(event: dict[str, Any]) -> dict[str, Any]:
    return cleaner.handle(
        event,
        _NoCalls(),
        remaining_ms=lambda: 600_000,
        cloudformation=_NoCalls(),
        own_vault="backup-vault-dev",
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"RequestType": "Destroy"}, "RequestType 'Destroy' is not one of Create, Update, Delete"),
        ({"RequestType": None}, "RequestType None is not one of Create, Update, Delete"),
        ({"ResourceProperties": ["backup-vault-dev"]}, "ResourceProperties is not a JSON object"),
        ({"OldResourceProperties": "x"}, "OldResourceProperties is not a JSON object"),
        (
            {"ResourceProperties": {"BackupVaultName": ["backup-vault-dev"]}},
            "ResourceProperties.BackupVaultName is required",
        ),
    ],
)
def test_a_malformed_request_fails_in_one_line_and_touches_nothing(
    response_url: tuple[str, list[dict[str, Any]]], fields: dict[str, Any], reason: str
) -> None:
    url, bodies = response_url
    answer(_event(url, **fields), _cleaner)
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert reason_of(body).startswith(reason)
    assert "\n" not in reason_of(body) and "Traceback" not in body["Reason"]
    # The twin: the same request, well formed, succeeds.
    answer(_event(url), _cleaner)
    assert bodies[-1]["Status"] == "SUCCESS"
    assert bodies[-1]["PhysicalResourceId"] == "empty-on-delete:backup-vault-dev"


def test_a_crashing_handler_is_still_answered(
    response_url: tuple[str, list[dict[str, Any]]],
) -> None:
    """What the hand-written answer could not do: a handler that dies before answering (here a
    bug that raises) still gets CloudFormation an answer, FAILED with the error, at once."""
    url, bodies = response_url

    def crash(event: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("SlotName")

    answer(_event(url), crash)
    [body] = bodies
    assert body["Status"] == "FAILED"
    assert reason_of(body) == "'SlotName'"


def test_the_answer_carries_the_result_and_keeps_the_physical_id_on_delete(
    response_url: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = response_url
    answer(_event(url), lambda e: success({"created": True}, "thing:1"))
    assert (bodies[-1]["Status"], bodies[-1]["PhysicalResourceId"]) == ("SUCCESS", "thing:1")
    assert bodies[-1]["Data"] == {"created": True}
    delete = _event(url, RequestType="Delete", PhysicalResourceId="thing:1")
    answer(delete, lambda e: success({"dropped": True}))
    assert (bodies[-1]["Status"], bodies[-1]["PhysicalResourceId"]) == ("SUCCESS", "thing:1")
    # The framework refuses a Delete that would change the physical ID: a handler that did so
    # would leave the old resource behind, so ours never name one on Delete.
    answer(delete, lambda e: success({}, "thing:2"))
    assert bodies[-1]["Status"] == "FAILED"
    assert "DELETE: cannot change the physical resource ID" in bodies[-1]["Reason"]


def test_a_reason_is_cut_to_fit_the_response() -> None:
    assert len(str(RequestFailed("x" * 5000))) == MAX_REASON_CHARS
    with pytest.raises(RequestFailed, match="is not a JSON object"):
        CfnRequest.parse(["Create"])
