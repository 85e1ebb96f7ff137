"""Makefile helpers: the synth summary and the flat-outputs writer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from govdr.tools import figures, outputs, summary, timings
from tests.conftest import ROOT, Synth


def test_summary_counts_resources_of_the_real_synth(
    synth: Synth, capsys: pytest.CaptureFixture[str]
) -> None:
    assert summary.main([str(synth.outdir)]) == 0
    text = capsys.readouterr().out
    assert f"root   TapStack{synth.config.environment_suffix}.template.json" in text
    assert text.count("nested ") == 7
    assert "AWS::RDS::DBInstance                         1" in text
    assert "AWS::EFS::MountTarget                        3" in text
    assert "transform" not in text  # no template expands at deploy time (govdr-no-transform)
    assert f"templates are in {synth.outdir.resolve()}" in text


def test_summary_of_a_missing_assembly_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert summary.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a cloud assembly" in err
    assert "make synth" in err


def test_flatten_cdk_outputs_file(tmp_path: Path) -> None:
    raw = {"TapStackdev": {"VpcId": "vpc-1", "DatabaseEndpointPort": 5432}, "Other": {}}
    source = tmp_path / "cdk-outputs.json"
    source.write_text(json.dumps(raw))
    out = tmp_path / "cfn-outputs" / "flat-outputs.json"
    rc = outputs.main(["--stack", "TapStackdev", "--from-file", str(source), "--out", str(out)])
    assert rc == 0
    assert json.loads(out.read_text()) == {"DatabaseEndpointPort": "5432", "VpcId": "vpc-1"}


def test_flatten_unknown_stack_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "cdk-outputs.json"
    source.write_text(json.dumps({"TapStackpr1": {}}))
    rc = outputs.main(
        ["--stack", "TapStackdev", "--from-file", str(source), "--out", str(tmp_path / "x.json")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "stack TapStackdev not in the outputs file (stacks there: TapStackpr1)" in err
    assert not (tmp_path / "x.json").exists()


def test_unreadable_outputs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "cdk-outputs.json"
    source.write_text("{not json")
    assert outputs.main(["--stack", "S", "--from-file", str(source)]) == 2
    assert "cannot read" in capsys.readouterr().err


STACK_BODY = json.dumps(
    {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}}, "Answer": {"Value": "42"}},
    }
)


@mock_aws
def test_outputs_from_a_deployed_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-2")
    cfn = boto3.client("cloudformation", region_name="eu-central-2")
    cfn.create_stack(StackName="TapStackdev", TemplateBody=STACK_BODY)
    out = tmp_path / "flat.json"
    assert outputs.main(["--stack", "TapStackdev", "--out", str(out)]) == 0
    flat = json.loads(out.read_text())
    assert flat["Answer"] == "42"
    assert flat["TopicArn"].startswith("arn:aws:sns:eu-central-2:")


@mock_aws
def test_outputs_of_a_missing_stack(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-2")
    assert outputs.main(["--stack", "TapStacknope"]) == 2
    assert "cannot describe stack TapStacknope" in capsys.readouterr().err


def test_outputs_refuse_an_unstable_stack() -> None:
    class FakeCfn:
        def describe_stacks(self, StackName: str) -> dict[str, object]:
            return {"Stacks": [{"StackStatus": "ROLLBACK_COMPLETE", "Outputs": []}]}

    with pytest.raises(outputs.OutputsError, match="is ROLLBACK_COMPLETE"):
        outputs.stack_outputs(FakeCfn(), "TapStackdev")


ENSURE_POSTGRES = Path(__file__).resolve().parents[2] / "scripts" / "ensure-postgres"


def _ensure_postgres(prefix: Path, *, as_nobody: bool) -> subprocess.CompletedProcess[str]:
    command = [str(ENSURE_POSTGRES)]
    if as_nobody and os.getuid() == 0:
        # The checkout may lie in a directory only its owner can enter (a 0700 temporary
        # directory): the unprivileged user runs a copy of the script from beside the prefix.
        copy = prefix.parent / f".ensure-postgres-{os.getpid()}"
        shutil.copy2(ENSURE_POSTGRES, copy)
        copy.chmod(0o755)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(copy)]
        try:
            env = {**os.environ, "GOVDR_PG_PREFIX": str(prefix)}
            return subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        finally:
            copy.unlink()
    env = {**os.environ, "GOVDR_PG_PREFIX": str(prefix)}
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def test_make_test_finds_an_installed_postgres_and_wal2json(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "bin" / "postgres").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "postgres").chmod(0o755)
    (tmp_path / "lib" / "wal2json.so").write_bytes(b"")
    done = _ensure_postgres(tmp_path, as_nobody=False)
    assert (done.returncode, done.stderr) == (0, "")


def test_make_test_without_postgres_and_no_root_says_in_one_line_how() -> None:
    # A prefix the unprivileged user can read: only postgres itself is there, wal2json is not.
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        prefix = Path(name)
        prefix.chmod(0o755)
        (prefix / "bin").mkdir(mode=0o755)
        (prefix / "bin" / "postgres").write_text("#!/bin/sh\n")
        (prefix / "bin" / "postgres").chmod(0o755)
        done = _ensure_postgres(prefix, as_nobody=True)
        (prefix / "lib").mkdir(mode=0o755)
        (prefix / "lib" / "wal2json.so").write_bytes(b"")
        (prefix / "lib" / "wal2json.so").chmod(0o644)
        neither = _ensure_postgres(Path(name) / "absent", as_nobody=True)
        both = _ensure_postgres(prefix, as_nobody=True)
    assert (both.returncode, both.stderr) == (0, "")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "missing postgresql-15-wal2json: run 'sudo apt-get install -y postgresql-15-wal2json' "
        "(Debian/Ubuntu), then make test again"
    ]
    assert neither.returncode == 1
    assert neither.stderr.splitlines() == [
        "missing postgresql-15 postgresql-15-wal2json: run 'sudo apt-get install -y "
        "postgresql-15 postgresql-15-wal2json' (Debian/Ubuntu), then make test again"
    ]


# --- the README's figures come from the results files -------------------------------------


def test_the_readme_figures_match_the_results_files() -> None:
    assert figures.main(["--check"]) == 0
    readme = (ROOT / "README.md").read_text()
    archive = json.loads((ROOT / "bench" / "results" / "archive.json").read_text())
    # The rendered table states the results file's own numbers.
    assert f"{archive['archiver']['transactions_per_second']:,} vs " in readme
    assert f"{archive['ratio_archiver_vs_pg_recvlogical']:.3f}x" in readme


def test_a_figure_edited_by_hand_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (ROOT / "README.md").read_text()
    archive = json.loads((ROOT / "bench" / "results" / "archive.json").read_text())
    ratio = f"{archive['ratio_archiver_vs_pg_recvlogical']:.3f}x"
    edited = tmp_path / "README.md"
    edited.write_text(readme.replace(ratio, "1.500x", 1))
    assert figures.main(["--check", "--readme", str(edited)]) == 1
    assert "the figures of archive differ" in capsys.readouterr().err
    # `make figures` puts the file's number back.
    assert figures.main(["--readme", str(edited)]) == 0
    assert edited.read_text() == readme


def test_a_changed_results_file_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "bench" / "results", results)
    timings = json.loads((results / "timings.json").read_text())
    next(iter(timings["steps"].values()))["seconds"] += 600
    (results / "timings.json").write_text(json.dumps(timings))
    assert figures.main(["--check", "--results", str(results)]) == 1
    assert "the figures of timings differ" in capsys.readouterr().err


def test_figures_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no marked parts\n")
    assert figures.main(["--check", "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "no marked part for archive, archive-bulk, timings" in err
    assert len(err.splitlines()) == 1
    results = tmp_path / "results"
    results.mkdir()
    (results / "archive.json").write_text("{not json")
    assert figures.main(["--check", "--results", str(results)]) == 2
    assert "archive.json: not JSON" in capsys.readouterr().err
    (results / "archive.json").write_text(json.dumps({"archiver": {}}))
    assert figures.main(["--check", "--results", str(results)]) == 2
    assert "re-run it" in capsys.readouterr().err


def test_the_bulk_figures_follow_their_file(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "bench" / "results", results)
    bulk = json.loads((results / "archive-bulk.json").read_text())
    rendered = figures.render_bulk(results)
    assert f"{bulk['archiver']['peak_rss_mb']} vs {bulk['pg_recvlogical']['peak_rss_mb']} MB" in (
        rendered
    )
    # Twin: a changed figure renders differently, so `--check` names the part.
    bulk["archiver"]["peak_rss_mb"] = 999.9
    (results / "archive-bulk.json").write_text(json.dumps(bulk))
    assert "999.9 vs" in figures.render_bulk(results)
    assert figures.main(["--check", "--results", str(results)]) == 1
    # A run on a machine whose speed changed is marked as such.
    bulk["steady_machine"], bulk["reference_spread"] = False, 1.7
    (results / "archive-bulk.json").write_text(json.dumps(bulk))
    assert "**not conclusive**: pg_recvlogical's rounds spread 1.7x" in figures.render_bulk(results)
    # Not measured: the README says so and how, instead of a number.
    (results / "archive-bulk.json").unlink()
    assert figures.render_bulk(results).startswith("Not measured yet: run `make bench-archive")


def test_timings_refuses_an_unknown_step(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        timings.main(["--steps", "synth,coffee"])
    assert exit_.value.code == 2
    assert "unknown step(s) coffee; known: synth, deploy_local, test, ci_fresh_clone" in (
        capsys.readouterr().err
    )
