#!/usr/bin/env python3
"""CDK entry point: read context and environment once, build the config, synthesize."""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk

from govdr.compliance.gate import apply_compliance
from govdr.config import ConfigError, load_config
from govdr.stacks.tap_stack import TapStack


def main() -> None:
    app = cdk.App()
    try:
        config = load_config(app.node.try_get_context, os.environ)
    except ConfigError as exc:
        sys.exit(f"govdr: {exc}")
    TapStack(
        app,
        config.stack_name,
        config=config,
        env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=config.region),
    )
    # Rule packs and govdr's own checks: any unacknowledged finding fails the synth.
    apply_compliance(app, config)
    app.synth()


if __name__ == "__main__":
    main()
