"""The gate rule ``lambda-concurrency``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    props_of,
    resources,
)

RULE = "lambda-concurrency"
FIX = (
    "reserve no concurrency (a fresh account or opt-in region may have only the unreserved "
    "minimum of 10); keep a function single by other means"
)


def lambda_concurrency_findings(template: Template) -> list[Finding]:
    """No function reserves concurrency: Lambda leaves 100 executions of the account's quota
    unreserved ("You can reserve up to the Unreserved account concurrency value minus 100",
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html) and new
    accounts have reduced quotas
    (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): with a quota of
    10 the API refuses any reservation, and the first deploy fails."""
    return [
        Finding(
            logical_id, f"reserves {props['ReservedConcurrentExecutions']} concurrent executions"
        )
        for logical_id, function in resources(template, "AWS::Lambda::Function")
        if "ReservedConcurrentExecutions" in (props := props_of(function))
    ]
