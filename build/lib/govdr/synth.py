"""In-process synthesis with cdk.json's feature flags and the compliance gate attached.

``app.py`` is the entry point of the CDK CLI; this module serves the tests and
``make compliance``, which synthesize without the CLI but must get the same templates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from govdr.compliance.gate import apply_compliance
from govdr.config import DrConfig
from govdr.stacks.tap_stack import TapStack

ROOT = Path(__file__).resolve().parents[1]
NESTED = ("network", "security", "backup", "database", "storage", "audit", "monitoring")


def cdk_json_context() -> dict[str, Any]:
    """The context (feature flags) of cdk.json, as the CDK CLI passes it to app.py."""
    doc = json.loads((ROOT / "cdk.json").read_text())
    context: dict[str, Any] = dict(doc.get("context", {}))
    context["aws:cdk:version-reporting"] = doc.get("versionReporting", True)
    return context


def synthesize(config: DrConfig, outdir: Path) -> TapStack:
    """Synthesize TapStack for ``config`` into ``outdir``; a gate finding raises."""
    app = cdk.App(outdir=str(outdir), context=cdk_json_context())
    stack = TapStack(
        app, config.stack_name, config=config, env=cdk.Environment(region=config.region)
    )
    apply_compliance(app, config)
    app.synth()
    return stack


def templates(stack: TapStack) -> dict[str, dict[str, Any]]:
    """The root template and each nested stack's, by name (``root``, ``network``, ...)."""
    found = {"root": dict(Template.from_stack(stack).to_json())}
    for name in NESTED:
        nested = getattr(stack, name)
        if nested is not None:  # the audit stack is absent when an existing trail is used
            found[name] = dict(Template.from_stack(nested).to_json())
    return found
