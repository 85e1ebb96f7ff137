"""The gate rule ``no-transform``."""

from __future__ import annotations

import json

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    as_list,
    props_of,
    resources,
)

RULE = "no-transform"
FIX = (
    "declare every resource in the template itself (no Transform; secrets rotate by govdr's"
    " own function) and use a supported Lambda runtime "
    "(govdr.constructs.python_bundle.RUNTIME)"
)


# Lambda runtimes AWS lists as deprecated (Python and Node.js), from the Deprecated runtimes
# table of https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html: a function on one
# gets no security patches and, some months after deprecation, can no longer be created or
# updated, so a first deploy fails on it. python3.10 is deprecated since 2026-10-31 (creation
# blocked from 2027-02-01), nodejs20.x since 2026-04-30.
DEPRECATED_RUNTIMES = frozenset(
    {
        "python2.7",
        "python3.6",
        "python3.7",
        "python3.8",
        "python3.9",
        "python3.10",
        "nodejs",
        "nodejs4.3",
        "nodejs4.3-edge",
        "nodejs6.10",
        "nodejs8.10",
        "nodejs10.x",
        "nodejs12.x",
        "nodejs14.x",
        "nodejs16.x",
        "nodejs18.x",
        "nodejs20.x",
    }
)


FUNCTION_TYPES = ("AWS::Lambda::Function", "AWS::Serverless::Function")


def transform_findings(template: Template) -> list[Finding]:
    """No template declares a Transform (macros and SAM-style transforms expand at deploy time
    into resources that no check of the synth has seen, e.g. hosted rotation's
    ``AWS::SecretsManager-2024-09-16`` and its python3.10 function,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/transform-section-structure.html),
    and no function runs on a deprecated runtime."""
    findings = []
    transform = template.get("Transform")
    if transform:
        names = ", ".join(t if isinstance(t, str) else json.dumps(t) for t in as_list(transform))
        findings.append(
            Finding(
                "Transform",
                f"the template declares {names}, which CloudFormation expands at deploy "
                "time into resources this synth never checked",
            )
        )
    for rtype in FUNCTION_TYPES:
        for logical_id, function in resources(template, rtype):
            runtime = props_of(function).get("Runtime")
            if runtime in DEPRECATED_RUNTIMES:
                findings.append(
                    Finding(
                        logical_id,
                        f"runtime {runtime} is deprecated "
                        "(https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html)",
                    )
                )
    return findings
