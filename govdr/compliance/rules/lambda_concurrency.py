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
    """No function reserves concurrency: Lambda keeps at least 10 unreserved executions per
    region and new accounts or opt-in regions often have a quota of exactly 10, so any
    reservation can fail the first deploy
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)."""
    return [
        Finding(
            logical_id, f"reserves {props['ReservedConcurrentExecutions']} concurrent executions"
        )
        for logical_id, function in resources(template, "AWS::Lambda::Function")
        if "ReservedConcurrentExecutions" in (props := props_of(function))
    ]
