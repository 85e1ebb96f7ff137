"""Shared fixtures: one synth per configuration per test session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from govdr.config import DrConfig
from govdr.stacks.tap_stack import TapStack
from govdr.synth import synthesize as build
from govdr.synth import templates

ROOT = Path(__file__).resolve().parent.parent
TEST_SUFFIX = "qa7"

# jsii runs on the pinned Node 22 from node_modules when the suite runs outside `make`.
_NODE_BIN = ROOT / "node_modules" / ".bin"
if _NODE_BIN.is_dir() and str(_NODE_BIN) not in os.environ.get("PATH", ""):
    os.environ["PATH"] = f"{_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


@dataclass
class Synth:
    """A synthesized TapStack: CDK assertion templates and raw JSON per nested stack."""

    config: DrConfig
    stack: TapStack
    outdir: Path

    @property
    def root(self) -> Template:
        return Template.from_stack(self.stack)

    def nested(self, name: str) -> Template:
        return Template.from_stack(getattr(self.stack, name))

    def raw(self, name: str | None = None) -> dict[str, Any]:
        """Raw template JSON of the root (``None``) or of a nested stack attribute."""
        stack = self.stack if name is None else getattr(self.stack, name)
        template: dict[str, Any] = Template.from_stack(stack).to_json()
        return template

    def all_raw(self) -> dict[str, dict[str, Any]]:
        return templates(self.stack)

    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))


def synthesize(config: DrConfig, outdir: Path) -> Synth:
    return Synth(config=config, stack=build(config, outdir), outdir=outdir)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The default configuration (destroyable), with a non-default suffix."""
    return synthesize(DrConfig(environment_suffix=TEST_SUFFIX), tmp_path_factory.mktemp("cdk"))


# An organization trail of another account, named instead of a trail of the environment's own.
ORG_TRAIL = "arn:aws:cloudtrail:eu-central-2:111122223333:trail/org-trail"


@pytest.fixture(scope="session")
def org_trail_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The default configuration with an existing trail (no Audit stack)."""
    return synthesize(
        DrConfig(environment_suffix="pr-7", existing_trail_arn=ORG_TRAIL),
        tmp_path_factory.mktemp("cdk-org-trail"),
    )


VARIANT = DrConfig(
    environment_suffix="pr-42",
    engine_version="17.4",
    alarm_email="dr-operators@example.gov",
    backup_copy_vault_arn="arn:aws:backup:eu-west-1:123456789012:backup-vault:govdr-copy",
    log_retention_days=731,
    backup_retention_days=35,
    cpu_alarm_percent=65,
    replication_slot_lag_alarm_mib=256,
)


@pytest.fixture(scope="session")
def variant_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Optional features on (e-mail, cross-region copy) and non-default thresholds."""
    return synthesize(VARIANT, tmp_path_factory.mktemp("cdk-variant"))


@pytest.fixture(scope="session")
def prod_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The production switch turned on."""
    return synthesize(
        DrConfig(environment_suffix="prod", production=True),
        tmp_path_factory.mktemp("cdk-prod"),
    )
