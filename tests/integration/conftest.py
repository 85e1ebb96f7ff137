"""Where the integration tests look: a deployment given by outputs, or a fresh emulator.

- ``GOVDR_OUTPUTS`` set (``make deploy-local``, ``make integ``): read that flat-outputs file and
  talk to ``AWS_ENDPOINT_URL`` if set (the emulator), else to the account of the credentials.
- otherwise (``make test``): synthesize, start the embedded emulator, deploy, and test that.
Tests marked ``live_only`` check what the emulator cannot know; they run only against AWS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from govdr.aws import Aws
from govdr.tools.outputs import stack_outputs
from govdr_emulator.deploy import Emulator, create_stack, publish_assets
from tests.conftest import Synth


@dataclass
class Deployment:
    aws: Aws
    outputs: dict[str, str]
    target: str  # "emulator" or "aws"

    @property
    def suffix(self) -> str:
        return self.outputs["EnvironmentSuffix"]

    @property
    def stack_name(self) -> str:
        return f"TapStack{self.suffix}"


def _target() -> str:
    if os.environ.get("GOVDR_OUTPUTS") and not os.environ.get("AWS_ENDPOINT_URL"):
        return "aws"
    return "emulator"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _target() == "aws":
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("live_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def deploy_to_emulator(synth: Synth) -> tuple[Emulator, Deployment]:
    emulator = Emulator.start()
    aws = Aws(emulator.endpoint)
    try:
        url = publish_assets(aws, synth.outdir, synth.config.stack_name)
        create_stack(aws, url, synth.config.stack_name)
        outputs = stack_outputs(aws.client("cloudformation"), synth.config.stack_name)
    except BaseException:
        emulator.stop()
        raise
    return emulator, Deployment(aws, outputs, "emulator")


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    outputs_file = os.environ.get("GOVDR_OUTPUTS")
    if outputs_file:
        path = Path(outputs_file)
        if not path.is_file():
            pytest.fail(f"{path} not found: deploy first (make deploy or make deploy-local)")
        yield Deployment(
            Aws(os.environ.get("AWS_ENDPOINT_URL")), json.loads(path.read_text()), _target()
        )
        return
    synth: Synth = request.getfixturevalue("synth")
    emulator, deployed = deploy_to_emulator(synth)
    try:
        yield deployed
    finally:
        emulator.stop()
