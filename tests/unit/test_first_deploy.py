"""Faults that stop the first deploy into a real account, each guarded by a template check.

The emulator enforces no quota and no engine parameter validation, so these checks (and
``govdr preflight`` in the target account) are what catch them before CloudFormation does.
"""

from __future__ import annotations

import copy

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.gate import run_own_checks
from govdr.compliance.matrix import build_matrix
from govdr.compliance.rules.audit_trail import trail_presence_findings
from govdr.compliance.rules.engine_version import engine_version_findings
from govdr.compliance.rules.lambda_concurrency import lambda_concurrency_findings
from govdr.compliance.rules.pgaudit import pgaudit_findings
from govdr.compliance.templates import resources
from govdr.config import ConfigError, DrConfig
from govdr.engine import connection_logging, family, major_of_family
from tests.conftest import ORG_TRAIL, Synth

TRAIL = "AWS::CloudTrail::Trail"


def test_fault_2_no_function_reserves_concurrency(synth: Synth) -> None:
    """Fault 2: ReservedConcurrentExecutions 1 on four functions fails in an account or opt-in
    region whose concurrency quota is 10 (the unreserved minimum)."""
    functions = [
        (name, lid)
        for name, template in synth.all_raw().items()
        for lid, _ in resources(template, "AWS::Lambda::Function")
    ]
    assert len(functions) >= 4
    for template in synth.all_raw().values():
        assert texts(lambda_concurrency_findings(template)) == []


def test_fault_2_twin_a_reservation_fails_the_gate(synth: Synth) -> None:
    """The faulty template: the archiver reserved one execution."""
    storage = copy.deepcopy(synth.raw("storage"))
    [(lid, archiver)] = [
        (lid, f)
        for lid, f in resources(storage, "AWS::Lambda::Function")
        if f["Properties"]["FunctionName"].startswith("txlog-archiver-")
    ]
    archiver["Properties"]["ReservedConcurrentExecutions"] = 1
    assert texts(lambda_concurrency_findings(storage)) == [
        f"{lid}: reserves 1 concurrent executions"
    ]
    assert [
        (rule, name, str(finding), finding.logical_id)
        for rule, name, finding in run_own_checks(synth.config, {"storage": storage})
        if rule == "lambda-concurrency"
    ] == [("lambda-concurrency", "storage", f"{lid}: reserves 1 concurrent executions", lid)]


def test_fault_4_connection_logging_in_the_form_of_each_major(
    synth: Synth, variant_synth: Synth
) -> None:
    """Fault 4: PostgreSQL 18 made log_connections a list; 17 and older take a boolean."""
    for built, major, expected in (
        (synth, 18, "receipt,authentication,authorization"),
        (variant_synth, 17, "1"),
    ):
        database = built.raw("database")
        [(_, group)] = resources(database, "AWS::RDS::DBParameterGroup")
        props = group["Properties"]
        assert props["Family"] == family(major)
        assert props["Parameters"]["log_connections"] == expected
        assert props["Parameters"]["log_disconnections"] == "1"
        assert texts(pgaudit_findings(database)) == []


def test_fault_4_twin_the_boolean_in_a_postgres18_group_fails_the_gate(synth: Synth) -> None:
    """The faulty parameter group: log_connections = "1" in family postgres18."""
    database = copy.deepcopy(synth.raw("database"))
    [(gid, group)] = resources(database, "AWS::RDS::DBParameterGroup")
    group["Properties"]["Parameters"]["log_connections"] = "1"
    assert texts(pgaudit_findings(database)) == [
        f"{gid}: log_connections is '1', PostgreSQL 18 logs connections with "
        "'receipt,authentication,authorization'"
    ]
    group["Properties"]["Family"] = "postgres99"
    assert texts(pgaudit_findings(database)) == [f"{gid}: family 'postgres99' is not known"]


def test_engine_facts_cover_every_major_the_config_accepts() -> None:
    for major in range(13, 19):
        assert DrConfig(engine_version=str(major)).engine_major == str(major)
        assert set(connection_logging(major)) == {"log_connections", "log_disconnections"}
        assert major_of_family(family(major)) == major
    assert major_of_family("aurora-postgresql16") is None
    with pytest.raises(ValueError, match="major 19 is not one of 13, 14, 15, 16, 17, 18"):
        connection_logging(19)
    with pytest.raises(ConfigError, match="invalid engineVersion '19'"):
        DrConfig(engine_version="19")


def test_fault_6_a_major_alone_follows_automatic_minor_upgrades(synth: Synth) -> None:
    """Fault 6: EngineVersion 18.6 with AutoMinorVersionUpgrade true; once RDS upgraded the
    minor, the next stack update asked for a downgrade."""
    [(_, instance)] = resources(synth.raw("database"), "AWS::RDS::DBInstance")
    props = instance["Properties"]
    assert (props["EngineVersion"], props["AutoMinorVersionUpgrade"]) == ("18", True)
    assert texts(engine_version_findings(synth.raw("database"))) == []


def test_fault_6_a_pinned_minor_turns_automatic_upgrades_off(variant_synth: Synth) -> None:
    [(_, instance)] = resources(variant_synth.raw("database"), "AWS::RDS::DBInstance")
    props = instance["Properties"]
    assert (props["EngineVersion"], props["AutoMinorVersionUpgrade"]) == ("17.4", False)
    assert texts(engine_version_findings(variant_synth.raw("database"))) == []


def test_fault_6_twin_a_pinned_minor_with_automatic_upgrades_fails_the_gate(
    synth: Synth,
) -> None:
    """The faulty instance: a pinned minor with automatic minor upgrades on."""
    database = copy.deepcopy(synth.raw("database"))
    [(lid, instance)] = resources(database, "AWS::RDS::DBInstance")
    instance["Properties"]["EngineVersion"] = "18.6"
    expected = [f"{lid}: EngineVersion 18.6 pins a minor while AutoMinorVersionUpgrade is on"]
    assert texts(engine_version_findings(database)) == expected
    del instance["Properties"]["AutoMinorVersionUpgrade"]  # CloudFormation's default is true
    assert texts(engine_version_findings(database)) == expected


def test_fault_8_an_existing_trail_replaces_the_environment_s_own(
    synth: Synth, org_trail_synth: Synth
) -> None:
    """Fault 8: one multi-region trail per environment; an account holds at most 5 trails per
    region, so a handful of pull-request environments exhaust it."""
    own = [lid for t in synth.all_raw().values() for lid, _ in resources(t, TRAIL)]
    assert len(own) == 1
    assert org_trail_synth.stack.audit is None
    templates = org_trail_synth.all_raw()
    assert not [lid for t in templates.values() for lid, _ in resources(t, TRAIL)]
    assert not [lid for t in templates.values() for lid, _ in resources(t, "AWS::S3::Bucket")]
    outputs = templates["root"]["Outputs"]
    assert outputs["TrailArn"]["Value"] == ORG_TRAIL
    assert "TrailBucketName" not in outputs
    assert run_own_checks(org_trail_synth.config, templates) == []
    assert texts(trail_presence_findings(synth.all_raw(), None)) == []


def test_fault_8_twins_no_trail_at_all_or_two_fail_the_gate(
    synth: Synth, org_trail_synth: Synth
) -> None:
    assert texts(trail_presence_findings(org_trail_synth.all_raw(), None)) == [
        "audit: no CloudTrail trail is created and no existing trail is named"
    ]
    [lid] = [lid for t in synth.all_raw().values() for lid, _ in resources(t, TRAIL)]
    assert texts(trail_presence_findings(synth.all_raw(), ORG_TRAIL)) == [
        f"{lid}: a trail is created although existingTrailArn is set"
    ]


def test_fault_8_the_matrix_names_the_existing_trail_as_au_2_and_au_12_evidence(
    org_trail_synth: Synth,
) -> None:
    built = org_trail_synth
    matrix = build_matrix(built.config, built.all_raw(), built.stack.acknowledgments)
    for control in ("AU-2", "AU-9", "AU-12"):
        [entry] = [c for c in matrix["controls"] if c["id"] == control]
        assert not entry["status"].startswith("failing"), entry["status"]
        assert any(ORG_TRAIL in line for line in entry["evidence"]), control


@pytest.mark.parametrize(
    "value",
    [
        "org-trail",
        "arn:aws:cloudtrail:eu-central-2:1111:trail/org-trail",
        "arn:aws:s3:::bucket",
        "arn:aws:cloudtrail:eu-central-2:111122223333:trail/a b",
    ],
)
def test_fault_8_a_malformed_trail_arn_is_one_clear_line(value: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid existingTrailArn .*-c existingTrailArn="):
        DrConfig(existing_trail_arn=value)
