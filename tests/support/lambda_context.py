"""A Lambda context for invoking handlers in tests: the attributes Powertools' Logger reads
(inject_lambda_context) and the remaining time the handlers budget with."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any


class LambdaTestContext:
    function_name = "govdr-test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-central-2:123456789012:function:govdr-test-function"
    aws_request_id = "req-1"
    log_group_name = "/aws/lambda/govdr-test-function"
    log_stream_name = "2026/12/04/[$LATEST]test"

    def __init__(self, seconds: float = 60.0) -> None:
        self.deadline = datetime.now(UTC) + timedelta(seconds=seconds)

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - datetime.now(UTC)).total_seconds() * 1000)


def log_to_current_stdout(logger: Any, monkeypatch: Any) -> None:
    """Point a module-level Powertools Logger at the current ``sys.stdout`` (pytest's capsys
    replaces it per test; the Logger's stream was bound when the module was imported)."""
    monkeypatch.setattr(logger.registered_handler, "stream", sys.stdout)
