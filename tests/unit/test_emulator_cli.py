"""`make deploy-local` end to end: deploy, verify, keep, destroy, stop (real emulator process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from govdr.emulator import deploy
from tests.conftest import TEST_SUFFIX, Synth


def test_deploy_verify_keep_destroy_and_stop(
    synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "flat-outputs.json"
    state = tmp_path / "emulator.json"
    common = ["--suffix", TEST_SUFFIX, "--state", str(state)]
    code = deploy.main(
        [*common, "--assembly", str(synth.outdir), "--outputs", str(outputs), "--keep"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    flat = json.loads(outputs.read_text())
    assert flat["DatabaseInstanceIdentifier"] == f"rds-{TEST_SUFFIX}"
    assert "resources created: " in out
    assert "integration checks: 16 passed, 1 deselected" in out
    assert "the emulator cannot:" in out
    assert "Custom::VpcRestrictDefaultSG" in out
    kept = json.loads(state.read_text())
    assert deploy.Emulator(int(kept["endpoint"].rsplit(":", 1)[1])).healthy()
    try:
        assert deploy.main([*common, "--destroy"]) == 0
        assert "nothing of it is left" in capsys.readouterr().out
    finally:
        assert deploy.main([*common, "--stop"]) == 0
    assert not state.exists()
    assert deploy.main([*common, "--stop"]) == 2
    assert "no kept emulator" in capsys.readouterr().err


def test_missing_assembly_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = deploy.main(
        [
            "--suffix",
            "nope",
            "--assembly",
            str(tmp_path),
            "--outputs",
            str(tmp_path / "o.json"),
            "--state",
            str(tmp_path / "s.json"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "TapStacknope.assets.json not found: synthesize TapStacknope first" in err
