"""`make deploy-local` end to end: deploy, verify, keep, destroy, stop (real emulator process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from govdr.cli.main import main as govdr
from govdr_emulator import deploy
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
    assert f"preflight of TapStack{TEST_SUFFIX} in eu-central-2" in out
    assert "verdict: PASS (4 PASS, 0 FAIL, 7 UNKNOWN" in out
    assert ", preflight " in out  # its time, in the timings line
    assert "resources created: " in out
    assert "integration checks: 21 passed, 3 deselected" in out
    assert "the emulator cannot:" in out
    assert "Custom::VpcRestrictDefaultSG" in out
    kept = json.loads(state.read_text())
    assert deploy.Emulator(int(kept["endpoint"].rsplit(":", 1)[1])).healthy()
    try:
        _operator_cli_on_the_kept_emulator(kept["endpoint"], outputs, tmp_path, capsys)
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


def _operator_cli_on_the_kept_emulator(
    endpoint: str, outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`govdr status` and the drills against the deployed stack, where the emulator can act."""
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "govdr-emulator",
        "AWS_SECRET_ACCESS_KEY": "govdr-emulator",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert govdr(["status", "--outputs", str(outputs), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["instance"] == f"rds-{TEST_SUFFIX}"
        assert status["multi_az"] is True
        assert 0 <= status["rpo_seconds"] < 60
        assert status["breaches"] == []

        assert govdr(["drill", "failover", "--outputs", str(outputs), "--dry-run"]) == 0
        plan = capsys.readouterr().out
        assert f"would reboot rds-{TEST_SUFFIX} with ForceFailover=true" in plan
        assert "cannot fail over" in plan
        assert govdr(["drill", "failover", "--outputs", str(outputs)]) == 2
        assert "cannot fail over" in capsys.readouterr().err

        reports = tmp_path / "reports"
        args = ["drill", "restore", "--outputs", str(outputs), "--reports-dir", str(reports)]
        args += ["--confirm", f"rds-{TEST_SUFFIX}"]
        assert govdr([*args, "--json"]) == 0
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert report["restored_instance"] == f"rds-{TEST_SUFFIX}-restore-drill"
        assert report["verified"] is None and report["met"] is None
        assert "runs no PostgreSQL" in report["verification"]
        assert "deletion of" in captured.err
        [report_file] = reports.glob(f"restore-{TEST_SUFFIX}-*.json")
        assert json.loads(report_file.read_text())["restore_seconds"] >= 0
        # The figure was published, and no leftover instance blocks a second run.
        cloudwatch = deploy.Aws(endpoint).client("cloudwatch")
        metrics = cloudwatch.list_metrics(Namespace="govdr/dr", MetricName="RestoreSeconds")
        assert metrics["Metrics"][0]["Dimensions"] == [
            {"Name": "Environment", "Value": TEST_SUFFIX}
        ]
        assert govdr([*args, "--json"]) == 0
        capsys.readouterr()
