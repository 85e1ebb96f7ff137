"""The control matrix: current, honest about status, and pointing only at real rules and tests."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import cdk_nag
import pytest

from govdr.compliance import control_tests, matrix
from govdr.compliance.gate import own_checks, synth_checks
from govdr.compliance.templates import resources
from govdr.tools import compliance_matrix
from tests.conftest import ROOT, Synth

DOCS = ROOT / "docs" / "compliance"
REQUIRED = {
    "AC-6",
    "AU-2",
    "AU-9",
    "AU-11",
    "AU-12",
    "CM-2",
    "CP-6",
    "CP-9",
    "CP-10",
    "IA-5(1)",
    "SC-7",
    "SC-8",
    "SC-12",
    "SC-13",
    "SC-28",
    "SI-4",
}


def _matrix(synth: Synth) -> dict[str, object]:
    return matrix.build_matrix(synth.config, synth.all_raw(), synth.stack.acknowledgments)


def test_committed_matrix_is_current(synth: Synth) -> None:
    current = _matrix(synth)
    committed = json.loads((DOCS / "fedramp-moderate.json").read_text())
    assert committed == json.loads(json.dumps(current)), "run `make compliance` and commit"
    assert (DOCS / "fedramp-moderate.md").read_text() == matrix.render_markdown(current), (
        "run `make compliance` and commit"
    )


def test_matrix_covers_the_required_controls_and_states_the_authorization_limit(
    synth: Synth,
) -> None:
    data = _matrix(synth)
    ids = {c["id"] for c in data["controls"]}  # type: ignore[index, union-attr]
    assert ids >= REQUIRED
    assert "cannot claim a FedRAMP authorization" in str(data["authorization_note"])
    for control in data["controls"]:  # type: ignore[union-attr]
        assert control["evidence"], control["id"]
        assert control["proven_by"]["tests"], control["id"]
        assert control["status"].startswith(("implemented", "partial: "))


def test_every_control_is_proven_by_marked_tests_that_exist() -> None:
    """The matrix's tests are collected from the tests' markers; each names a real test."""
    collected = matrix.proving_tests()
    assert set(collected) == {control.id for control in matrix.CONTROLS}
    for tests in collected.values():
        for ref in tests:
            path, name = ref.split("::")
            source = (ROOT / path).read_text()
            assert re.search(rf"^def {re.escape(name)}\(", source, re.M), ref


def _marked(tmp_path: Path, body: str) -> Path:
    tests = tmp_path / "tests"
    (tests / "unit").mkdir(parents=True)
    (tests / "unit" / "test_probe.py").write_text("import pytest\n\n\n" + body)
    return tests


def test_a_marker_is_collected_and_its_failing_twins(tmp_path: Path) -> None:
    known = {"SC-8", "AU-9"}
    good = _marked(
        tmp_path / "good",
        '@pytest.mark.control("SC-8", "AU-9")\ndef test_a() -> None:\n    pass\n\n\n'
        '@pytest.mark.parametrize("x", [1])\n@pytest.mark.control("SC-8")\n'
        "def test_b(x: int) -> None:\n    pass\n",
    )
    # `from pytest import mark` is the same marker.
    short = _marked(
        tmp_path / "short",
        'from pytest import mark\n\n\n@mark.control("AU-9")\ndef test_c() -> None:\n    pass\n',
    )
    assert control_tests.collect(short, known) == {"AU-9": ("tests/unit/test_probe.py::test_c",)}
    assert control_tests.collect(good, known) == {
        "SC-8": ("tests/unit/test_probe.py::test_a", "tests/unit/test_probe.py::test_b"),
        "AU-9": ("tests/unit/test_probe.py::test_a",),
    }
    for name, body, message in (
        ("unknown", '@pytest.mark.control("XX-1")\ndef test_a() -> None:\n    pass\n', "XX-1"),
        ("empty", "@pytest.mark.control()\ndef test_a() -> None:\n    pass\n", "names no"),
        (
            "helper",
            '@pytest.mark.control("SC-8")\ndef helper() -> None:\n    pass\n',
            "not on helper",
        ),
        (
            "module",
            'pytestmark = pytest.mark.control("SC-8")\n\n\ndef test_a() -> None:\n    pass\n',
            "directly on a module-level test",
        ),
        (
            "param",
            '@pytest.mark.parametrize("x", [pytest.param(1, marks=pytest.mark.control("SC-8"))])'
            "\ndef test_a(x: int) -> None:\n    pass\n",
            "directly on a module-level test",
        ),
        (
            "bare",
            "@pytest.mark.control\ndef test_a() -> None:\n    pass\n",
            "directly on a module-level test",
        ),
        (
            "variable",
            'ID = "SC-8"\n\n\n@pytest.mark.control(ID)\ndef test_a() -> None:\n    pass\n',
            "string literals",
        ),
    ):
        with pytest.raises(control_tests.ControlMarkerError, match=message):
            control_tests.collect(_marked(tmp_path / name, body), known)


def test_every_referenced_rule_exists(synth: Synth) -> None:
    # per-template rules and whole-synthesis rules (such as network-flows)
    known_own = set(own_checks(synth.config)) | set(synth_checks(synth.config))
    bundle = next(Path(cdk_nag.__file__).parent.joinpath("_jsii").glob("*.tgz"))
    with tarfile.open(bundle) as tar:
        packs = {
            name: tar.extractfile(f"package/lib/packs/{name}.js").read().decode()  # type: ignore[union-attr]
            for name in ("nist-800-53-r5", "aws-solutions")
        }
    nist = set(re.findall(r"rule: \w+\.(\w+)", packs["nist-800-53-r5"]))
    solutions = set(re.findall(r"ruleSuffixOverride: '(\w+)'", packs["aws-solutions"]))
    assert len(nist) > 50 and len(solutions) > 50
    for control in matrix.CONTROLS:
        assert set(control.rules) <= known_own, control.id
        for rule in control.nag_rules:
            pack, _, name = rule.partition("-")
            assert name in (nist if pack == "NIST.800.53.R5" else solutions), rule


def test_a_weakened_template_turns_its_controls_failing(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    [(_, group)] = resources(templates["database"], "AWS::RDS::DBParameterGroup")
    group["Properties"]["Parameters"]["rds.force_ssl"] = "0"
    data = matrix.build_matrix(synth.config, templates, synth.stack.acknowledgments)
    status = {c["id"]: c["status"] for c in data["controls"]}
    evidence = {c["id"]: c["evidence"] for c in data["controls"]}
    assert "rds.force_ssl=0, ssl_min_protocol_version=TLSv1.2" in evidence["SC-8"]
    assert status["SC-8"].startswith("failing: govdr-database-tls")
    assert status["SC-13"].startswith("failing: ")
    assert status["AU-2"] == "implemented"


def test_evidence_reports_what_the_templates_lack(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    for _, policy in resources(templates["audit"], "AWS::S3::BucketPolicy"):
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        policy["Properties"]["PolicyDocument"]["Statement"] = [
            s for s in statements if s["Effect"] != "Deny"
        ]
    for lid, _ in list(resources(templates["network"], "Custom::VpcRestrictDefaultSG")):
        del templates["network"]["Resources"][lid]
    data = matrix.build_matrix(synth.config, templates, synth.stack.acknowledgments)
    evidence = {c["id"]: "\n".join(c["evidence"]) for c in data["controls"]}
    assert "NOT MET: " in evidence["SC-8"]
    assert "bucket policy does not deny requests without TLS" in evidence["AU-9"]
    assert "(Custom::VpcRestrictDefaultSG): MISSING" in evidence["SC-7"]


def test_cross_region_copy_completes_cp6(variant_synth: Synth) -> None:
    data = matrix.build_matrix(
        variant_synth.config, variant_synth.all_raw(), variant_synth.stack.acknowledgments
    )
    cp6 = next(c for c in data["controls"] if c["id"] == "CP-6")
    assert cp6["status"] == "implemented"
    assert any("eu-west-1" in line for line in cp6["evidence"])


def test_names_are_shown_without_the_deployment_suffix(synth: Synth) -> None:
    text = json.dumps(_matrix(synth))
    assert f"-{synth.config.environment_suffix}" not in text
    assert "rds-<suffix>" in text


def test_make_compliance_writes_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert compliance_matrix.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "fedramp-moderate.md").read_text() == (
        DOCS / "fedramp-moderate.md"
    ).read_text()
    assert json.loads((tmp_path / "fedramp-moderate.json").read_text()) == json.loads(
        (DOCS / "fedramp-moderate.json").read_text()
    )
    assert "wrote" in capsys.readouterr().out


def test_a_control_refuses_a_string_where_a_tuple_belongs() -> None:
    # Every control of the matrix was built (importing the module constructs them all); the
    # twins are the one-item tuple without its comma and an empty entry.
    assert len(matrix.CONTROLS) >= 10
    good = matrix.CONTROLS[0]
    for name, bad in (
        ("implementation", "every resource is encrypted"),
        ("rules", ("iam-wildcards", "")),
        ("nag_rules", ["AwsSolutions-IAM5"]),
    ):
        with pytest.raises(TypeError, match=rf"control {good.id}: {name} must be a tuple"):
            dataclasses.replace(good, **{name: bad})


def test_recovery_is_partial_without_the_drill_or_the_rpo_alarm(synth: Synth) -> None:
    def cp10(templates: dict[str, Any]) -> dict[str, Any]:
        data = matrix.build_matrix(synth.config, templates, synth.stack.acknowledgments)
        return next(c for c in data["controls"] if c["id"] == "CP-10")

    assert cp10(synth.all_raw())["status"].startswith("implemented")
    no_drill = copy.deepcopy(synth.all_raw())
    resources_ = no_drill["monitoring"]["Resources"]
    for lid in [k for k, r in resources_.items() if r["Type"] == "AWS::FIS::ExperimentTemplate"]:
        del resources_[lid]
    assert cp10(no_drill)["status"].startswith("partial")
    weak_drill = copy.deepcopy(synth.all_raw())
    for r in weak_drill["monitoring"]["Resources"].values():
        if r["Type"] == "AWS::FIS::ExperimentTemplate":
            for action in r["Properties"]["Actions"].values():
                action["Parameters"]["forceFailover"] = "false"  # a plain reboot
    assert cp10(weak_drill)["status"].startswith("partial")
    no_alarm = copy.deepcopy(synth.all_raw())
    for r in no_alarm["monitoring"]["Resources"].values():
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["MetricName"] == "RpoSeconds":
            r["Properties"]["MetricName"] = "Something"
    assert cp10(no_alarm)["status"].startswith("partial")
