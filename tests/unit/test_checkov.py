"""checkov over the synthesized templates: zero failed checks, every accepted check explained
and needed, and the scanner's failures are real (twins)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3

from govdr.compliance import checkov_scan
from govdr.compliance.checkov_scan import ScanError, scan
from govdr.constructs.scanner_notes import accept_check
from tests.conftest import ROOT, Synth


@pytest.fixture(scope="module")
def default_report(synth: Synth) -> checkov_scan.ScanReport:
    return scan(synth.outdir)


def _skip_notes(directory: Path) -> set[tuple[str, str, str]]:
    """(file, resource, check id) for every checkov note in the templates."""
    notes = set()
    for path in directory.glob("*.template.json"):
        for logical_id, resource in json.loads(path.read_text()).get("Resources", {}).items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                notes.add((path.name, f"{resource['Type']}.{logical_id}", skip["id"]))
    return notes


def _write(directory: Path, name: str, template: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(template))


def test_every_template_passes_checkov_with_each_accepted_check_explained(
    synth: Synth, default_report: checkov_scan.ScanReport
) -> None:
    report = default_report
    assert report.failed == [], "\n".join(map(str, report.failed))
    assert report.unexplained == []
    assert report.resources >= 150 and report.passed >= 250
    skipped = {(s["file"], s["resource"], s["check_id"]) for s in report.skipped}
    # checkov honoured every note the constructs wrote, and skipped nothing else.
    assert skipped == _skip_notes(synth.outdir)
    assert len(skipped) >= 30
    # The README's figures are these.
    readme = " ".join((ROOT / "README.md").read_text().split())
    total = report.passed + len(skipped)
    assert (
        f"checkov runs {total} checks on {report.resources} resources: {report.passed} pass and "
        f"{len(skipped)} are accepted"
    ) in readme
    assert f"brings back exactly those {len(skipped)} failures" in readme


def test_every_accepted_check_is_needed_removing_the_notes_brings_each_failure_back(
    synth: Synth, default_report: checkov_scan.ScanReport, tmp_path: Path
) -> None:
    for path in synth.template_files():
        template = json.loads(path.read_text())
        for resource in template.get("Resources", {}).values():
            resource.get("Metadata", {}).pop("checkov", None)
        _write(tmp_path, path.name, template)
    stripped = scan(tmp_path)
    failed = {(f.file, f.resource, f.check_id) for f in stripped.failed}
    accepted = {(s["file"], s["resource"], s["check_id"]) for s in default_report.skipped}
    # A note for a check that would pass anyway is stale; a failure without a note is a finding.
    assert failed == accepted
    assert stripped.skipped == []


def test_the_production_templates_pass_checkov(prod_synth: Synth) -> None:
    report = scan(prod_synth.outdir)
    assert report.failed == [], "\n".join(map(str, report.failed))
    assert report.unexplained == []


def _bucket_template(metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    bucket: dict[str, Any] = {"Type": "AWS::S3::Bucket", "Properties": {}}
    if metadata:
        bucket["Metadata"] = metadata
    return {"Resources": {"Plain": bucket}}


def test_an_unencrypted_unversioned_bucket_fails_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "bad.template.json", _bucket_template())
    assert checkov_scan.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "checkov FAILED bad.template.json: AWS::S3::Bucket.Plain: CKV_AWS_21" in err


def test_a_check_accepted_without_its_reason_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skips = [{"id": check, "comment": "ok"} for check in ("CKV_AWS_18", "CKV_AWS_21")]
    _write(tmp_path, "short.template.json", _bucket_template({"checkov": {"skip": skips}}))
    report = scan(tmp_path)
    assert {line.split(": ")[-1] for line in report.unexplained} == {
        "CKV_AWS_18 is skipped without its reason",
        "CKV_AWS_21 is skipped without its reason",
    }
    assert checkov_scan.main([str(tmp_path)]) == 1
    assert "skipped without its reason" in capsys.readouterr().err


def test_a_missing_scanner_or_assembly_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert checkov_scan.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no *.template.json; run `make synth` first" in err
    _write(tmp_path, "bad.template.json", _bucket_template())
    monkeypatch.setenv("GOVDR_CHECKOV", str(tmp_path / "no-checkov"))
    assert checkov_scan.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkov is not installed at" in err and "make install" in err


def test_a_scanner_that_prints_no_report_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "checkov"
    fake.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nexit 3\n")
    fake.chmod(0o755)
    _write(tmp_path / "out", "bad.template.json", _bucket_template())
    monkeypatch.setenv("GOVDR_CHECKOV", str(fake))
    assert checkov_scan.main([str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkov exited 3 without a report" in err
    with pytest.raises(ScanError):
        scan(tmp_path / "out")


def test_accept_check_needs_a_check_id_and_a_reason() -> None:
    bucket = s3.Bucket(Stack(App(), "S"), "B")
    with pytest.raises(ValueError, match="not a checkov AWS check id"):
        accept_check(bucket, "AWS_18", "a reason long enough to be a reason")
    with pytest.raises(ValueError, match="needs its reason"):
        accept_check(bucket, "CKV_AWS_18", "because")
    accept_check(bucket, "CKV_AWS_18", "first reason, long enough to count")
    accept_check(bucket, "CKV_AWS_18", "second reason, long enough to count")
    resource = bucket.node.default_child
    assert resource.get_metadata("checkov") == {  # type: ignore[union-attr]
        "skip": [{"id": "CKV_AWS_18", "comment": "second reason, long enough to count"}]
    }
