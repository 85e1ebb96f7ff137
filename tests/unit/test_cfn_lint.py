"""cfn-lint over every synthesized template, for eu-central-2: zero errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.match import Match

from govdr.synth import NESTED
from tests.conftest import Synth


def _lint(path: Path) -> list[Match]:
    matches = lint_file(path, ManualArgs(regions=["eu-central-2"]))
    return [m for m in matches if m.rule.severity.lower() == "error"]


def test_every_template_is_linted(synth: Synth) -> None:
    names = [p.name for p in synth.template_files()]
    assert len(names) == 1 + len(NESTED)
    assert sum(".nested." in n for n in names) == len(NESTED)


@pytest.mark.parametrize("index", range(1 + len(NESTED)))
@pytest.mark.control("CM-2")
def test_template_has_no_cfn_lint_errors(synth: Synth, index: int) -> None:
    path = synth.template_files()[index]
    errors = _lint(path)
    assert errors == [], "\n".join(f"{path.name}: {m}" for m in errors)


def test_cfn_lint_rejects_a_broken_template(synth: Synth, tmp_path: Path) -> None:
    broken = (
        synth.template_files()[0]
        .read_text()
        .replace('"AWS::CloudFormation::Stack"', '"AWS::CloudFormation::Stak"', 1)
    )
    path = tmp_path / "broken.template.json"
    path.write_text(broken)
    assert _lint(path), "cfn-lint accepted an unknown resource type"
