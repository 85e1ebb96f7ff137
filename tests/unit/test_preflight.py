"""`govdr preflight`: each check's PASS, FAIL and UNKNOWN (on AccessDenied) against botocore
Stubbers answering as AWS documents, on the plan read from a real synthesis; the report's
JSON and text forms and the exit codes."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from govdr.cli.main import main
from govdr.config import REGION, DrConfig
from govdr.preflight import checks
from govdr.preflight.checks import FAIL, PASS, UNKNOWN, Context, run_check
from govdr.preflight.command import exit_code, render, run
from govdr.preflight.permissions import deploy_actions
from govdr.preflight.plan import Plan, PlanError, load_plan
from tests.conftest import TEST_SUFFIX, Synth, synthesize

ACCOUNT = "123456789012"
CALLER = f"arn:aws:sts::{ACCOUNT}:assumed-role/platform-deployer/jane"
CALLER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/teams/platform-deployer"
EXEC_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"
DEPLOY_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-deploy-role-{ACCOUNT}-{REGION}"
ZONES = ["eu-central-2a", "eu-central-2b", "eu-central-2c"]


class Stubs:
    """One stubbed boto3 client per service; ``clients(service, home)`` hands them out."""

    def __init__(self) -> None:
        self.session = boto3.session.Session(
            aws_access_key_id="stub", aws_secret_access_key="stub", region_name=REGION
        )
        self.made: dict[str, tuple[Any, Stubber]] = {}

    def stub(self, service: str) -> Stubber:
        if service not in self.made:
            client = self.session.client(service)
            stubber = Stubber(client)
            stubber.activate()
            self.made[service] = (client, stubber)
        return self.made[service][1]

    def __call__(self, service: str, home: bool) -> Any:
        self.stub(service)
        return self.made[service][0]

    def ok(self, service: str, method: str, response: dict[str, Any], **expected: Any) -> Stubs:
        self.stub(service).add_response(method, response, expected or None)
        return self

    def error(self, service: str, method: str, code: str, status: int = 400) -> Stubs:
        self.stub(service).add_client_error(
            method,
            service_error_code=code,
            service_message=f"stubbed {code}",
            http_status_code=status,
        )
        return self

    def verify(self) -> None:
        for _, stubber in self.made.values():
            stubber.assert_no_pending_responses()


@pytest.fixture(scope="module")
def plan(synth: Synth) -> Plan:
    return load_plan(synth.outdir, synth.config.stack_name)


@pytest.fixture
def stubs() -> Iterator[Stubs]:
    made = Stubs()
    yield made
    made.verify()


def ctx_for(plan: Plan, stubs: Stubs) -> Context:
    return Context(plan=plan, clients=stubs, account=ACCOUNT, caller_arn=CALLER)


def check(check_id: str) -> checks.Check:
    return next(c for c in checks.CHECKS if c.id == check_id)


def verdict(check_id: str, plan: Plan, stubs: Stubs) -> checks.Result:
    return run_check(check(check_id), ctx_for(plan, stubs))


def mutated(plan: Plan, change: Callable[[dict[str, dict[str, Any]]], None]) -> Plan:
    """A copy of the plan whose templates ``change`` rewrote (the failing twin's input)."""
    templates = copy.deepcopy(plan.templates)
    change(templates)
    return Plan(
        stack_name=plan.stack_name,
        region=plan.region,
        templates=templates,
        manifest=dict(plan.manifest),
    )


def _each(templates: dict[str, dict[str, Any]], resource_type: str) -> Iterator[dict[str, Any]]:
    for template in templates.values():
        for resource in template.get("Resources", {}).values():
            if resource["Type"] == resource_type:
                yield resource.setdefault("Properties", {})


# --- the plan read from cdk.out ------------------------------------------------------------------
def test_plan_reads_root_and_nested_templates(plan: Plan, synth: Synth) -> None:
    assert plan.stack_name == f"TapStack{TEST_SUFFIX}"
    assert plan.region == REGION
    assert len(plan.templates) == len(synth.all_raw())
    assert plan.availability_zones == ZONES
    assert plan.bootstrap_parameter == "/cdk-bootstrap/hnb659fds/version"
    assert plan.required_bootstrap_version == 6
    assert plan.reserved_concurrency == 0
    assert plan.creates_trail and plan.existing_trail_arn is None
    [db] = plan.databases
    assert (db.engine, db.engine_version, db.instance_class) == ("postgres", "18", "db.m7g.large")
    assert (db.storage_type, db.multi_az) == ("gp3", True)
    assert f"com.amazonaws.{REGION}.secretsmanager" in plan.interface_endpoint_services
    assert f"com.amazonaws.{REGION}.s3" not in plan.interface_endpoint_services  # a gateway
    assert plan.role_arn("cloudFormationExecutionRoleArn", ACCOUNT) == EXEC_ROLE


def test_plan_without_assembly_or_stack_is_a_clear_error(tmp_path: Path, synth: Synth) -> None:
    with pytest.raises(PlanError, match="no cloud assembly"):
        load_plan(tmp_path, "TapStackdev")
    with pytest.raises(PlanError, match=f"stacks there: TapStack{TEST_SUFFIX}"):
        load_plan(synth.outdir, "TapStacknope")


def test_every_resource_type_has_create_permissions(plan: Plan) -> None:
    needed, missing = deploy_actions(plan.resource_types, plan.region)
    assert missing == []
    assert "rds:CreateDBInstance" in needed
    assert needed["lambda:InvokeFunction"]  # custom resources
    assert "AWS::RDS::DBInstance" in needed["rds:CreateDBInstance"]


# --- 1. region enabled ---------------------------------------------------------------------------
def test_region_enabled_pass(plan: Plan, stubs: Stubs) -> None:
    stubs.ok(
        "account",
        "get_region_opt_status",
        {"RegionName": REGION, "RegionOptStatus": "ENABLED"},
        RegionName=REGION,
    )
    result = verdict("region-enabled", plan, stubs)
    assert (result.status, result.detail) == (PASS, f"{REGION} is ENABLED")


def test_region_disabled_fails_with_the_fix(plan: Plan, stubs: Stubs) -> None:
    stubs.ok(
        "account", "get_region_opt_status", {"RegionName": REGION, "RegionOptStatus": "DISABLED"}
    )
    result = verdict("region-enabled", plan, stubs)
    assert result.status == FAIL
    assert (
        result.fix is not None and f"aws account enable-region --region-name {REGION}" in result.fix
    )


def test_region_falls_back_to_ec2_when_the_account_api_is_refused(plan: Plan, stubs: Stubs) -> None:
    stubs.error("account", "get_region_opt_status", "AccessDeniedException", 403)
    stubs.ok(
        "ec2",
        "describe_regions",
        {
            "Regions": [
                {"RegionName": "eu-central-1", "OptInStatus": "opt-in-not-required"},
                {"RegionName": REGION, "OptInStatus": "not-opted-in"},
            ]
        },
        AllRegions=True,
    )
    result = verdict("region-enabled", plan, stubs)
    assert (result.status, result.detail) == (
        FAIL,
        f"{REGION} is not-opted-in (ec2:DescribeRegions)",
    )


FAKE_REGION = "xx-fake-1"
NO_SUCH_REGION_FIX = (
    "check --region / the configured region (without --region: the stack's region in the "
    "cloud assembly)"
)


def _in_region(plan: Plan, region: str) -> Plan:
    return Plan(
        stack_name=plan.stack_name,
        region=region,
        templates=plan.templates,
        manifest=dict(plan.manifest),
    )


def test_nonexistent_region_fails_when_the_account_api_rejects_its_name(
    plan: Plan, stubs: Stubs
) -> None:
    """A well-formed name of no region (--region xx-fake-1): GetRegionOptStatus answers
    ValidationException, which must fail the check, not end as an UNKNOWN 'retry'."""
    stubs.stub("account").add_client_error(
        "get_region_opt_status",
        service_error_code="ValidationException",
        service_message=f"Invalid Region Name: {FAKE_REGION}",
        http_status_code=400,
        expected_params={"RegionName": FAKE_REGION},
    )
    result = verdict("region-enabled", _in_region(plan, FAKE_REGION), stubs)
    assert (result.status, result.detail, result.fix) == (
        FAIL,
        f"region {FAKE_REGION} does not exist",
        NO_SUCH_REGION_FIX,
    )


def test_nonexistent_region_fails_when_ec2_does_not_list_it(plan: Plan, stubs: Stubs) -> None:
    stubs.error("account", "get_region_opt_status", "AccessDeniedException", 403)
    stubs.ok(
        "ec2",
        "describe_regions",
        {"Regions": [{"RegionName": REGION, "OptInStatus": "opted-in"}]},
        AllRegions=True,
    )
    result = verdict("region-enabled", _in_region(plan, FAKE_REGION), stubs)
    assert (result.status, result.detail, result.fix) == (
        FAIL,
        f"region {FAKE_REGION} does not exist",
        NO_SUCH_REGION_FIX,
    )


def test_region_unknown_names_both_permissions(plan: Plan, stubs: Stubs) -> None:
    stubs.error("account", "get_region_opt_status", "AccessDeniedException", 403)
    stubs.error("ec2", "describe_regions", "UnauthorizedOperation", 403)
    result = verdict("region-enabled", plan, stubs)
    assert result.status == UNKNOWN
    assert "account:GetRegionOptStatus" in result.detail and "ec2:DescribeRegions" in result.detail


# --- 2. CDK bootstrap ----------------------------------------------------------------------------
def _bootstrap(stubs: Stubs, version: str) -> Stubs:
    return stubs.ok(
        "ssm",
        "get_parameter",
        {"Parameter": {"Name": "/cdk-bootstrap/hnb659fds/version", "Value": version}},
        Name="/cdk-bootstrap/hnb659fds/version",
    )


def test_bootstrap_pass(plan: Plan, stubs: Stubs) -> None:
    result = verdict("cdk-bootstrap", plan, _bootstrap(stubs, "30"))
    assert (result.status, result.detail) == (
        PASS,
        "bootstrap version 30 (the template requires >= 6)",
    )


def test_bootstrap_missing_fails(plan: Plan, stubs: Stubs) -> None:
    stubs.error("ssm", "get_parameter", "ParameterNotFound")
    result = verdict("cdk-bootstrap", plan, stubs)
    assert result.status == FAIL
    assert "is not bootstrapped" in result.detail
    assert (
        result.fix == f"bootstrap with the pinned CLI: npx cdk bootstrap aws://{ACCOUNT}/{REGION}"
    )


def test_bootstrap_too_old_for_the_templates_rule_fails(plan: Plan, stubs: Stubs) -> None:
    """The failing twin: a rule that rejects versions 1-29 asks for 30; version 29 fails."""

    def stricter(templates: dict[str, dict[str, Any]]) -> None:
        rule = templates[plan.root_file]["Rules"]["CheckBootstrapVersion"]
        rule["Assertions"][0]["Assert"]["Fn::Not"][0]["Fn::Contains"][0] = [
            str(v) for v in range(1, 30)
        ]

    strict = mutated(plan, stricter)
    assert strict.required_bootstrap_version == 30
    result = verdict("cdk-bootstrap", strict, _bootstrap(stubs, "29"))
    assert (result.status, result.detail) == (
        FAIL,
        "bootstrap version 29 < 30 required by the template",
    )


def test_bootstrap_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    stubs.error("ssm", "get_parameter", "AccessDeniedException")
    result = verdict("cdk-bootstrap", plan, stubs)
    assert result.status == UNKNOWN
    assert result.detail == "ssm:GetParameter was refused (AccessDeniedException)"


# --- 3. Lambda concurrency -----------------------------------------------------------------------
def _concurrency(stubs: Stubs, total: int, unreserved: int) -> Stubs:
    return stubs.ok(
        "lambda",
        "get_account_settings",
        {
            "AccountLimit": {
                "ConcurrentExecutions": total,
                "UnreservedConcurrentExecutions": unreserved,
            }
        },
    )


def test_lambda_concurrency_pass_in_a_quota_10_account(plan: Plan, stubs: Stubs) -> None:
    result = verdict("lambda-concurrency", plan, _concurrency(stubs, 10, 10))
    assert result.status == PASS
    assert result.detail == (
        "unreserved 10 of 10; the templates reserve 0; at least 10 must stay unreserved"
    )


def test_fault_2_reserved_concurrency_in_a_quota_10_account_fails(plan: Plan, stubs: Stubs) -> None:
    """Fault 2: four functions reserved one execution each, which a fresh opt-in region's
    account (quota 10) refuses ("below its minimum value of [10]")."""

    def reserve(templates: dict[str, dict[str, Any]]) -> None:
        for props in list(_each(templates, "AWS::Lambda::Function"))[:4]:
            props["ReservedConcurrentExecutions"] = 1

    reserving = mutated(plan, reserve)
    assert reserving.reserved_concurrency == 4
    result = verdict("lambda-concurrency", reserving, _concurrency(stubs, 10, 10))
    assert result.status == FAIL
    assert result.fix is not None and "to at least 104" in result.fix


def _reserving(plan: Plan, count: int) -> Plan:
    def reserve(templates: dict[str, dict[str, Any]]) -> None:
        for props in list(_each(templates, "AWS::Lambda::Function"))[:count]:
            props["ReservedConcurrentExecutions"] = 1

    return mutated(plan, reserve)


@pytest.mark.parametrize(
    ("total", "unreserved", "advice"),
    [(10, 10, 104), (50, 50, 104), (1000, 102, 1002)],
    ids=["quota-10", "quota-50", "others-reserve-898"],
)
def test_advised_lambda_quota_passes_the_check_at_that_quota(
    plan: Plan, total: int, unreserved: int, advice: int
) -> None:
    """The advised quota must be one at which the check passes: at quota 10, reserving 4
    advised 14 (4 + min(100, 10)), but at 14 the minimum is 14 and the check still fails."""
    reserving = _reserving(plan, 4)
    assert reserving.reserved_concurrency == 4
    first = Stubs()
    result = verdict("lambda-concurrency", reserving, _concurrency(first, total, unreserved))
    first.verify()
    assert result.status == FAIL and result.fix is not None
    match = re.search(r"to at least (\d+),", result.fix)
    assert match is not None, result.fix
    advised = int(match[1])
    assert advised == advice
    others = total - unreserved  # what the account reserves already stays reserved

    def at_quota(quota: int) -> str:
        again = Stubs()
        left = max(quota - others, 0)
        rerun = verdict("lambda-concurrency", reserving, _concurrency(again, quota, left))
        again.verify()
        return rerun.status

    assert at_quota(advised) == PASS
    assert at_quota(advised - 1) == FAIL  # the least such quota
    old_advice = 4 + min(checks.LAMBDA_UNRESERVED_MINIMUM, total)
    assert at_quota(old_advice) == FAIL


def test_lambda_concurrency_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    stubs.error("lambda", "get_account_settings", "AccessDeniedException", 403)
    result = verdict("lambda-concurrency", plan, stubs)
    assert result.status == UNKNOWN
    assert "lambda:GetAccountSettings" in result.detail


# --- 4. engine version and instance class --------------------------------------------------------
def _engine(stubs: Stubs, versions: list[dict[str, str]], **expected: Any) -> Stubs:
    return stubs.ok(
        "rds", "describe_db_engine_versions", {"DBEngineVersions": versions}, **expected
    )


PG18 = {"Engine": "postgres", "EngineVersion": "18.6", "Status": "available"}


def test_engine_major_resolves_to_the_default_minor(plan: Plan, stubs: Stubs) -> None:
    _engine(stubs, [PG18], Engine="postgres", EngineVersion="18", DefaultOnly=True)
    result = verdict("engine-version", plan, stubs)
    assert (result.status, result.detail) == (PASS, f"postgres 18 -> 18.6 is available in {REGION}")


def test_engine_pinned_minor_not_offered_fails_with_the_offered_ones(
    plan: Plan, stubs: Stubs
) -> None:
    def pin(templates: dict[str, dict[str, Any]]) -> None:
        for props in _each(templates, "AWS::RDS::DBInstance"):
            props["EngineVersion"] = "18.1"

    _engine(stubs, [{**PG18, "EngineVersion": "18.1", "Status": "deprecated"}])
    _engine(stubs, [PG18], Engine="postgres", DBParameterGroupFamily="postgres18")
    result = verdict("engine-version", mutated(plan, pin), stubs)
    assert result.status == FAIL
    assert "engine version 18.1 is not available (status deprecated)" in result.detail
    assert result.fix == "set -c engineVersion= to 18 or one of: 18.6"


def test_engine_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    stubs.error("rds", "describe_db_engine_versions", "AccessDenied", 403)
    assert verdict("engine-version", plan, stubs).status == UNKNOWN


def _option(
    multi_az: bool = True, storage: str = "gp3", zones: list[str] = ZONES
) -> dict[str, Any]:
    return {
        "Engine": "postgres",
        "EngineVersion": "18.6",
        "DBInstanceClass": "db.m7g.large",
        "MultiAZCapable": multi_az,
        "StorageType": storage,
        "AvailabilityZones": [{"Name": z} for z in zones],
    }


def _orderable(stubs: Stubs, options: list[dict[str, Any]]) -> Stubs:
    return stubs.ok(
        "rds",
        "describe_orderable_db_instance_options",
        {"OrderableDBInstanceOptions": options},
        Engine="postgres",
        EngineVersion="18.6",
        DBInstanceClass="db.m7g.large",
        Vpc=True,
    )


def test_instance_class_orderable_multi_az_gp3_pass(plan: Plan, stubs: Stubs) -> None:
    _engine(stubs, [PG18])
    _orderable(stubs, [_option(storage="gp2"), _option()])
    result = verdict("instance-class", plan, stubs)
    assert (result.status, result.detail) == (
        PASS,
        "db.m7g.large (postgres 18.6) is orderable Multi-AZ with gp3",
    )


def test_instance_class_without_multi_az_gp3_fails(plan: Plan, stubs: Stubs) -> None:
    _engine(stubs, [PG18])
    _orderable(stubs, [_option(multi_az=False), _option(storage="io1")])
    result = verdict("instance-class", plan, stubs)
    assert (result.status, result.detail) == (
        FAIL,
        "db.m7g.large (postgres 18.6) is not orderable Multi-AZ with storage gp3",
    )
    assert result.fix is not None and "-c instanceClass=" in result.fix


def test_instance_class_missing_in_an_az_fails(plan: Plan, stubs: Stubs) -> None:
    _engine(stubs, [PG18])
    _orderable(stubs, [_option(zones=ZONES[:2])])
    result = verdict("instance-class", plan, stubs)
    assert result.status == FAIL
    assert result.detail.endswith("is not orderable in eu-central-2c")


def test_instance_class_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    _engine(stubs, [PG18])
    stubs.error("rds", "describe_orderable_db_instance_options", "AccessDenied", 403)
    result = verdict("instance-class", plan, stubs)
    assert result.status == UNKNOWN
    assert "rds:DescribeOrderableDBInstanceOptions" in result.detail


# --- 5. interface endpoints ----------------------------------------------------------------------
def _services(plan: Plan, drop: str | None = None, short: str | None = None) -> dict[str, Any]:
    details = []
    for name in sorted(plan.interface_endpoint_services):
        if name == drop:
            continue
        details.append(
            {"ServiceName": name, "AvailabilityZones": ZONES[:2] if name == short else ZONES}
        )
    return {"ServiceDetails": details}


def test_endpoint_services_in_every_az_pass(plan: Plan, stubs: Stubs) -> None:
    stubs.ok(
        "ec2",
        "describe_vpc_endpoint_services",
        _services(plan),
        Filters=[{"Name": "service-name", "Values": sorted(plan.interface_endpoint_services)}],
    )
    result = verdict("endpoint-services", plan, stubs)
    assert (result.status, result.detail) == (PASS, f"10 services offered in {', '.join(ZONES)}")


def test_endpoint_service_missing_or_short_of_an_az_fails(plan: Plan, stubs: Stubs) -> None:
    backup, rds = f"com.amazonaws.{REGION}.backup", f"com.amazonaws.{REGION}.rds"
    stubs.ok("ec2", "describe_vpc_endpoint_services", _services(plan, drop=backup, short=rds))
    result = verdict("endpoint-services", plan, stubs)
    assert result.status == FAIL
    assert result.detail == f"{backup} is not offered; {rds} is not offered in eu-central-2c"


def test_endpoint_services_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    stubs.error("ec2", "describe_vpc_endpoint_services", "UnauthorizedOperation", 403)
    result = verdict("endpoint-services", plan, stubs)
    assert result.status == UNKNOWN
    assert "ec2:DescribeVpcEndpointServices" in result.detail


# --- 6. parameter groups -------------------------------------------------------------------------
def _param(name: str, kind: str, allowed: str | None, value: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {
        "ParameterName": name,
        "ParameterValue": value,
        "DataType": kind,
        "IsModifiable": True,
        "ApplyType": "static",
    }
    if allowed is not None:
        found["AllowedValues"] = allowed
    return found


BOOL = "0,1"
POSTGRES18_DEFAULTS = [
    _param("rds.force_ssl", "boolean", BOOL, "1"),
    _param("rds.logical_replication", "boolean", BOOL, "0"),
    _param("ssl_min_protocol_version", "string", "TLSv1,TLSv1.1,TLSv1.2,TLSv1.3", "TLSv1.2"),
    _param(
        "shared_preload_libraries",
        "list",
        "auto_explain,orafce,pgaudit,pglogical,pg_cron,pg_prewarm,pg_stat_statements,pg_tle",
        "pg_stat_statements",
    ),
    _param("pgaudit.log", "list", "ddl,function,misc,read,role,write,none,all"),
    _param("pgaudit.log_catalog", "boolean", BOOL),
    _param("pgaudit.log_parameter", "boolean", BOOL),
    _param("pgaudit.role", "string", None),
    _param("track_commit_timestamp", "boolean", BOOL),
    _param("log_connections", "list", "receipt,authentication,authorization,setup_durations,all"),
    _param("log_disconnections", "boolean", BOOL),
    _param("max_connections", "integer", "6-8388607"),
    _param("max_slot_wal_keep_size", "integer", "-1-2147483647", "-1"),
]
OUTPUT_PLUGINS = _param("output_plugin_libraries", "list", "pgoutput,test_decoding,wal2json")


def _defaults(stubs: Stubs, parameters: list[dict[str, Any]], family: str = "postgres18") -> Stubs:
    return stubs.ok(
        "rds",
        "describe_engine_default_parameters",
        {"EngineDefaults": {"DBParameterGroupFamily": family, "Parameters": parameters}},
        DBParameterGroupFamily=family,
    )


def _set_parameters(**values: str) -> Callable[[dict[str, dict[str, Any]]], None]:
    def change(templates: dict[str, dict[str, Any]]) -> None:
        for props in _each(templates, "AWS::RDS::DBParameterGroup"):
            props["Parameters"].update(values)

    return change


def test_parameter_values_accepted_pass(plan: Plan, stubs: Stubs) -> None:
    result = verdict("parameter-values", plan, _defaults(stubs, POSTGRES18_DEFAULTS))
    assert (result.status, result.detail) == (PASS, "12 values accepted by postgres18")


def test_fault_4_boolean_log_connections_in_postgres18_fails(plan: Plan, stubs: Stubs) -> None:
    """Fault 4: log_connections = "1" in a postgres18 group, where PostgreSQL 18 made it a
    list of connection stages; RDS's allowed values for the family reject it."""
    boolean = mutated(plan, _set_parameters(log_connections="1"))
    result = verdict("parameter-values", boolean, _defaults(stubs, POSTGRES18_DEFAULTS))
    assert result.status == FAIL
    assert "log_connections='1': 1 not in receipt,authentication" in result.detail


def test_unknown_parameter_or_value_out_of_range_fails(plan: Plan, stubs: Stubs) -> None:
    wrong = mutated(plan, _set_parameters(max_connections="5", no_such_setting="on"))
    result = verdict("parameter-values", wrong, _defaults(stubs, POSTGRES18_DEFAULTS))
    assert result.status == FAIL
    assert "max_connections='5' is outside 6-8388607" in result.detail
    assert "no_such_setting does not exist in the family" in result.detail


def test_value_rules() -> None:
    integer = _param("work_mem", "integer", "-1,64-2147483647")
    assert checks.value_problem("work_mem", "-1", integer) is None
    assert checks.value_problem("work_mem", "4096", integer) is None
    assert checks.value_problem("work_mem", "8", integer) is not None
    assert checks.value_problem("work_mem", "lots", integer) is not None
    assert checks.value_problem("x", "{DBInstanceClassMemory/4}", integer) is None
    fixed = {**_param("port", "integer", "1-65535"), "IsModifiable": False}
    assert checks.value_problem("port", "5432", fixed) == "port cannot be modified"


def test_parameter_values_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    stubs.error("rds", "describe_engine_default_parameters", "AccessDenied", 403)
    result = verdict("parameter-values", plan, stubs)
    assert result.status == UNKNOWN
    assert "rds:DescribeEngineDefaultParameters" in result.detail


def test_output_plugin_libraries_without_wal2json_fails(plan: Plan, stubs: Stubs) -> None:
    """Where the family knows output_plugin_libraries, a template that does not list wal2json
    would leave the archiver's replication user unable to decode."""
    result = verdict(
        "output-plugins", plan, _defaults(stubs, [*POSTGRES18_DEFAULTS, OUTPUT_PLUGINS])
    )
    assert result.status == FAIL
    assert "the archiver's wal2json would be refused" in result.detail
    assert result.fix is not None and "-c outputPluginLibraries=" in result.fix


def test_output_plugin_libraries_listing_wal2json_passes(plan: Plan, stubs: Stubs) -> None:
    listing = mutated(plan, _set_parameters(output_plugin_libraries="pgoutput, wal2json"))
    result = verdict(
        "output-plugins", listing, _defaults(stubs, [*POSTGRES18_DEFAULTS, OUTPUT_PLUGINS])
    )
    assert result.status == PASS
    assert "lists wal2json in output_plugin_libraries" in result.detail


def test_the_output_plugin_knob_makes_the_synthesized_group_pass(
    tmp_path_factory: pytest.TempPathFactory, stubs: Stubs
) -> None:
    """The fix preflight names works: -c outputPluginLibraries=... puts the list in the
    parameter group of the real synth, and the same check then passes."""
    config = DrConfig(
        environment_suffix="plugins1",
        output_plugin_libraries="pgoutput, test_decoding, wal2json",
    )
    built = synthesize(config, tmp_path_factory.mktemp("cdk-plugins"))
    knob_plan = load_plan(built.outdir, config.stack_name)
    [group] = knob_plan.parameter_groups
    assert group.parameters["output_plugin_libraries"] == "pgoutput, test_decoding, wal2json"
    result = verdict(
        "output-plugins", knob_plan, _defaults(stubs, [*POSTGRES18_DEFAULTS, OUTPUT_PLUGINS])
    )
    assert result.status == PASS


def test_the_default_synth_leaves_output_plugin_libraries_out(plan: Plan) -> None:
    # A family without the parameter rejects a group that sets it.
    assert all("output_plugin_libraries" not in g.parameters for g in plan.parameter_groups)


def test_family_without_output_plugin_libraries_passes(plan: Plan, stubs: Stubs) -> None:
    result = verdict("output-plugins", plan, _defaults(stubs, POSTGRES18_DEFAULTS))
    assert (result.status, result.detail) == (
        PASS,
        "postgres18 has no output_plugin_libraries (no restriction)",
    )


# --- 7. CloudTrail -------------------------------------------------------------------------------
def _trails(stubs: Stubs, count: int) -> Stubs:
    trails = [
        {
            "Name": f"trail-{n}",
            "TrailARN": f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/trail-{n}",
            "IsMultiRegionTrail": True,
        }
        for n in range(count)
    ]
    return stubs.ok(
        "cloudtrail", "describe_trails", {"trailList": trails}, includeShadowTrails=True
    )


def test_trail_quota_room_pass(plan: Plan, stubs: Stubs) -> None:
    result = verdict("cloudtrail", plan, _trails(stubs, 4))
    assert result.status == PASS
    assert result.detail.startswith(f"4 of 5 trails in {REGION}")


def test_trails_of_other_accounts_do_not_count(plan: Plan, stubs: Stubs) -> None:
    trails = [
        {"Name": f"t{n}", "TrailARN": f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/t{n}"}
        for n in range(4)
    ]
    trails.append({"Name": "organization", "TrailARN": ORG_TRAIL})
    stubs.ok("cloudtrail", "describe_trails", {"trailList": trails})
    result = verdict("cloudtrail", plan, stubs)
    assert result.status == PASS
    assert result.detail.endswith("; 1 of other accounts not counted")


def test_fault_8_trail_quota_reached_fails(plan: Plan, stubs: Stubs) -> None:
    """Fault 8: every environment created its own trail; at 5 trails per region the next
    environment's trail cannot be created."""
    result = verdict("cloudtrail", plan, _trails(stubs, 5))
    assert result.status == FAIL
    assert result.fix is not None and "-c existingTrailArn=" in result.fix


def test_trails_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    stubs.error("cloudtrail", "describe_trails", "AccessDeniedException")
    assert verdict("cloudtrail", plan, stubs).status == UNKNOWN


ORG_TRAIL = f"arn:aws:cloudtrail:{REGION}:210987654321:trail/organization"


def _existing_trail(plan: Plan) -> Plan:
    def use_existing(templates: dict[str, dict[str, Any]]) -> None:
        for template in templates.values():
            for logical_id in [
                k
                for k, r in template.get("Resources", {}).items()
                if r["Type"] == "AWS::CloudTrail::Trail"
            ]:
                del template["Resources"][logical_id]
        templates[plan.root_file]["Outputs"]["TrailArn"]["Value"] = ORG_TRAIL

    return mutated(plan, use_existing)


@pytest.mark.parametrize(
    ("logging", "multi_region", "validated", "status", "needle"),
    [
        (True, True, True, PASS, "is logging, multi-region, validated"),
        (False, True, True, FAIL, "is not logging"),
        (True, False, False, FAIL, "is not multi-region, has no log-file validation"),
    ],
)
def test_existing_trail_is_checked_instead_of_the_quota(
    plan: Plan,
    stubs: Stubs,
    logging: bool,
    multi_region: bool,
    validated: bool,
    status: str,
    needle: str,
) -> None:
    existing = _existing_trail(plan)
    assert existing.existing_trail_arn == ORG_TRAIL
    stubs.ok("cloudtrail", "get_trail_status", {"IsLogging": logging}, Name=ORG_TRAIL)
    stubs.ok(
        "cloudtrail",
        "describe_trails",
        {
            "trailList": [
                {
                    "TrailARN": ORG_TRAIL,
                    "IsMultiRegionTrail": multi_region,
                    "LogFileValidationEnabled": validated,
                }
            ]
        },
        trailNameList=[ORG_TRAIL],
        includeShadowTrails=True,
    )
    result = verdict("cloudtrail", existing, stubs)
    assert result.status == status
    assert needle in result.detail


MISTYPED_TRAIL = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/organisation"
MISSING_TRAIL = (
    f"trail {MISTYPED_TRAIL} does not exist (or is not visible from this account and region)"
)
MISSING_TRAIL_FIX = (
    "name an existing trail with -c existingTrailArn=<arn>, or leave it empty to create the "
    "environment's own trail"
)


def _named_trail(plan: Plan, arn: str) -> Plan:
    def name(templates: dict[str, dict[str, Any]]) -> None:
        templates[plan.root_file]["Outputs"]["TrailArn"]["Value"] = arn

    return mutated(_existing_trail(plan), name)


def test_mistyped_existing_trail_fails_when_get_trail_status_finds_none(
    plan: Plan, stubs: Stubs
) -> None:
    """A well-formed ARN of a trail that does not exist: GetTrailStatus answers
    TrailNotFoundException, which must fail the check (the deploy would record with no trail),
    not end as an UNKNOWN 'retry'."""
    mistyped = _named_trail(plan, MISTYPED_TRAIL)
    stubs.error("cloudtrail", "get_trail_status", "TrailNotFoundException")
    result = verdict("cloudtrail", mistyped, stubs)
    assert (result.status, result.detail, result.fix) == (FAIL, MISSING_TRAIL, MISSING_TRAIL_FIX)


def test_existing_trail_that_describe_trails_does_not_list_fails(plan: Plan, stubs: Stubs) -> None:
    mistyped = _named_trail(plan, MISTYPED_TRAIL)
    stubs.ok("cloudtrail", "get_trail_status", {"IsLogging": True}, Name=MISTYPED_TRAIL)
    stubs.ok(
        "cloudtrail",
        "describe_trails",
        {"trailList": []},
        trailNameList=[MISTYPED_TRAIL],
        includeShadowTrails=True,
    )
    result = verdict("cloudtrail", mistyped, stubs)
    assert (result.status, result.detail, result.fix) == (FAIL, MISSING_TRAIL, MISSING_TRAIL_FIX)


# --- 8. AWS Backup -------------------------------------------------------------------------------
def _backup(stubs: Stubs, **types: bool) -> Stubs:
    return stubs.ok(
        "backup",
        "describe_region_settings",
        {"ResourceTypeOptInPreference": {"Aurora": True, **types}},
    )


def test_backup_opted_in_pass(plan: Plan, stubs: Stubs) -> None:
    result = verdict("backup-opt-in", plan, _backup(stubs, RDS=True, EFS=True))
    assert (result.status, result.detail) == (PASS, "opted in for RDS, EFS")


def test_backup_not_opted_in_for_efs_fails(plan: Plan, stubs: Stubs) -> None:
    result = verdict("backup-opt-in", plan, _backup(stubs, RDS=True, EFS=False))
    assert result.status == FAIL
    assert result.fix == (
        "aws backup update-region-settings --resource-type-opt-in-preference EFS=true "
        f"--region {REGION}"
    )


def test_backup_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    stubs.error("backup", "describe_region_settings", "AccessDeniedException", 403)
    assert verdict("backup-opt-in", plan, stubs).status == UNKNOWN


# --- 9. deploy permissions -----------------------------------------------------------------------
def _simulation(actions: list[str], denied: dict[str, str] | None = None) -> dict[str, Any]:
    results = []
    for action in actions:
        how = (denied or {}).get(action)
        result: dict[str, Any] = {
            "EvalActionName": action,
            "EvalResourceName": "*",
            "EvalDecision": "implicitDeny" if how else "allowed",
        }
        if how == "SCP":
            result["OrganizationsDecisionDetail"] = {"AllowedByOrganizations": False}
        if how == "boundary":
            result["PermissionsBoundaryDecisionDetail"] = {"AllowedByPermissionsBoundary": False}
        results.append(result)
    return {"EvaluationResults": results, "IsTruncated": False}


def _simulations(
    plan: Plan, stubs: Stubs, source: str, denied: dict[str, str] | None = None
) -> list[str]:
    actions = sorted(deploy_actions(plan.resource_types, plan.region)[0])
    for start in range(0, len(actions), checks.SIMULATION_BATCH):
        batch = actions[start : start + checks.SIMULATION_BATCH]
        stubs.ok(
            "iam",
            "simulate_principal_policy",
            _simulation(batch, denied),
            PolicySourceArn=source,
            ActionNames=batch,
            ContextEntries=[
                {
                    "ContextKeyName": "aws:RequestedRegion",
                    "ContextKeyValues": [REGION],
                    "ContextKeyType": "string",
                }
            ],
        )
    return actions


def _caller_role(stubs: Stubs) -> Stubs:
    return stubs.ok(
        "iam",
        "get_role",
        {
            "Role": {
                "Path": "/teams/",
                "RoleName": "platform-deployer",
                "RoleId": "AROAEXAMPLEEXAMPLE01",
                "Arn": CALLER_ROLE,
                "CreateDate": "2026-01-01T00:00:00Z",
            }
        },
        RoleName="platform-deployer",
    )


def _assume(stubs: Stubs, allowed: bool = True) -> Stubs:
    return stubs.ok(
        "iam",
        "simulate_principal_policy",
        {
            "EvaluationResults": [
                {
                    "EvalActionName": "sts:AssumeRole",
                    "EvalResourceName": DEPLOY_ROLE,
                    "EvalDecision": "allowed" if allowed else "implicitDeny",
                }
            ]
        },
        PolicySourceArn=CALLER_ROLE,
        ActionNames=["sts:AssumeRole"],
        ResourceArns=[DEPLOY_ROLE],
        ContextEntries=[
            {
                "ContextKeyName": "aws:RequestedRegion",
                "ContextKeyValues": [REGION],
                "ContextKeyType": "string",
            }
        ],
    )


def test_deploy_permissions_simulate_the_cdk_execution_role(plan: Plan, stubs: Stubs) -> None:
    _bootstrap(stubs, "30")
    _caller_role(stubs)
    actions = _simulations(plan, stubs, EXEC_ROLE)
    _assume(stubs)
    result = verdict("deploy-permissions", plan, stubs)
    assert result.status == PASS
    assert result.detail.startswith(f"{EXEC_ROLE} may call all {len(actions)} actions")


def test_deploy_denied_by_an_scp_fails_naming_it(plan: Plan, stubs: Stubs) -> None:
    _bootstrap(stubs, "30")
    _caller_role(stubs)
    _simulations(
        plan, stubs, EXEC_ROLE, {"rds:CreateDBInstance": "SCP", "kms:CreateKey": "boundary"}
    )
    _assume(stubs)
    result = verdict("deploy-permissions", plan, stubs)
    assert result.status == FAIL
    assert f"{EXEC_ROLE}: kms:CreateKey (permissions boundary)" in result.detail
    assert f"{EXEC_ROLE}: rds:CreateDBInstance (SCP)" in result.detail


def test_caller_that_may_not_assume_the_deploy_role_fails(plan: Plan, stubs: Stubs) -> None:
    _bootstrap(stubs, "30")
    _caller_role(stubs)
    _simulations(plan, stubs, EXEC_ROLE)
    _assume(stubs, allowed=False)
    result = verdict("deploy-permissions", plan, stubs)
    assert result.status == FAIL
    assert f"{CALLER_ROLE}: sts:AssumeRole (identity policy)" in result.detail


def test_without_bootstrap_the_callers_role_is_simulated(plan: Plan, stubs: Stubs) -> None:
    stubs.error("ssm", "get_parameter", "ParameterNotFound")
    _caller_role(stubs)
    _simulations(plan, stubs, CALLER_ROLE)
    result = verdict("deploy-permissions", plan, stubs)
    assert result.status == PASS
    assert result.detail.startswith(f"{CALLER_ROLE} may call all")


def test_missing_execution_role_fails(plan: Plan, stubs: Stubs) -> None:
    _bootstrap(stubs, "30")
    _caller_role(stubs)
    stubs.error("iam", "simulate_principal_policy", "NoSuchEntity", 404)
    result = verdict("deploy-permissions", plan, stubs)
    assert (result.status, result.detail) == (FAIL, f"{EXEC_ROLE} does not exist")


def test_bootstrap_unreadable_and_no_execution_role_simulates_the_caller(
    plan: Plan, stubs: Stubs
) -> None:
    stubs.error("ssm", "get_parameter", "AccessDeniedException")
    _caller_role(stubs)
    stubs.error("iam", "simulate_principal_policy", "NoSuchEntity", 404)
    _simulations(plan, stubs, CALLER_ROLE)
    result = verdict("deploy-permissions", plan, stubs)
    assert result.status == PASS
    assert result.detail.startswith(f"{CALLER_ROLE} may call all")


def test_deploy_permissions_unknown_on_access_denied(plan: Plan, stubs: Stubs) -> None:
    _bootstrap(stubs, "30")
    stubs.error("iam", "get_role", "AccessDenied", 403)
    stubs.error("iam", "simulate_principal_policy", "AccessDenied", 403)
    result = verdict("deploy-permissions", plan, stubs)
    assert result.status == UNKNOWN
    assert result.detail == "iam:SimulatePrincipalPolicy was refused (AccessDenied)"


# --- the whole run: report, text, exit codes -----------------------------------------------------
def _all_pass(plan: Plan, stubs: Stubs, *, backup_efs: bool = True) -> Stubs:
    """Every call of a run, in the order of the checks (run with one worker)."""
    stubs.ok("sts", "get_caller_identity", {"Account": ACCOUNT, "Arn": CALLER, "UserId": "AROA:j"})
    stubs.ok(
        "account", "get_region_opt_status", {"RegionName": REGION, "RegionOptStatus": "ENABLED"}
    )
    _bootstrap(stubs, "30")
    _concurrency(stubs, 1000, 1000)
    _engine(stubs, [PG18])
    _orderable(stubs, [_option()])
    stubs.ok("ec2", "describe_vpc_endpoint_services", _services(plan))
    _defaults(stubs, POSTGRES18_DEFAULTS)
    _trails(stubs, 1)
    _backup(stubs, RDS=True, EFS=backup_efs)
    _caller_role(stubs)
    _simulations(plan, stubs, EXEC_ROLE)
    _assume(stubs)
    return stubs


REPORT_KEYS = {
    "version",
    "stack",
    "region",
    "account",
    "caller",
    "verdict",
    "counts",
    "seconds",
    "checks",
}
CHECK_KEYS = {"id", "title", "status", "detail", "fix", "doc", "seconds"}


def test_report_schema_text_and_exit_code_when_nothing_fails(plan: Plan, stubs: Stubs) -> None:
    report = run(plan, _all_pass(plan, stubs), workers=1)
    assert set(report) == REPORT_KEYS
    assert report["version"] == 1
    assert [c["id"] for c in report["checks"]] == [c.id for c in checks.CHECKS]
    for entry in report["checks"]:
        assert set(entry) == CHECK_KEYS
        assert entry["doc"].startswith("https://docs.aws.amazon.com/")
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    # output-plugins passes (the family has no such parameter); nothing else is stubbed away
    assert set(statuses.values()) == {PASS}, statuses
    assert report["counts"] == {PASS: 11, FAIL: 0, UNKNOWN: 0}
    assert (report["verdict"], exit_code(report)) == (PASS, 0)
    json.dumps(report)  # serializable as --json prints it
    text = render(report)
    assert text.splitlines()[0].startswith(f"preflight of {plan.stack_name} in {REGION}")
    assert text.splitlines()[-1].startswith("verdict: PASS (11 PASS, 0 FAIL, 0 UNKNOWN")


def test_a_failing_check_fails_the_run_and_shows_its_fix(plan: Plan, stubs: Stubs) -> None:
    report = run(plan, _all_pass(plan, stubs, backup_efs=False), workers=1)
    assert (report["verdict"], exit_code(report)) == (FAIL, 1)
    text = render(report)
    assert "FAIL    backup-opt-in" in text
    assert "fix: aws backup update-region-settings" in text
    assert f"doc: {checks.BACKUP_DOC}" in text


# --- the CLI -------------------------------------------------------------------------------------
@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_credentials")
def test_cli_without_credentials_is_one_clear_line(
    synth: Synth, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["preflight", "--cdk-out", str(synth.outdir), "--suffix", TEST_SUFFIX])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("govdr: no AWS credentials found: configure them")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--suffix", "nope"], "TapStacknope is not in"),
        (["--stack", "TapStacknope"], "TapStacknope is not in"),
        (["--region", "zurich"], "--region 'zurich' is not an AWS region name"),
    ],
)
def test_cli_bad_input_exits_2(
    synth: Synth, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preflight", "--cdk-out", str(synth.outdir), *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith("govdr: ")


def test_cli_without_a_synth_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--cdk-out", str(tmp_path)]) == 2
    assert "run `make synth SUFFIX=<suffix>` first" in capsys.readouterr().err


def _damaged(synth: Synth, tmp_path: Path, which: str, content: bytes) -> Path:
    """A copy of the synth's cloud assembly (its JSON files) with one file rewritten."""
    import shutil

    assembly = tmp_path / "cdk.out"
    assembly.mkdir()
    for file in synth.outdir.glob("*.json"):
        shutil.copy(file, assembly / file.name)
    names = {
        "manifest": "manifest.json",
        "root": f"TapStack{TEST_SUFFIX}.template.json",
        "nested": sorted(f.name for f in assembly.glob("*.nested.template.json"))[0],
        "assets": f"TapStack{TEST_SUFFIX}.assets.json",
    }
    target = assembly / names[which]
    assert target.is_file()
    target.write_bytes(content)
    return target


@pytest.mark.parametrize(
    ("which", "content"),
    [
        ("manifest", b'{"version": "48.0.0", "artifacts": {'),
        ("manifest", b"[]"),
        ("manifest", b'{"artifacts": ["TapStack"]}'),
        ("root", b"\xff\xfe not UTF-8"),
        ("nested", b"<html>not a template</html>"),
        ("assets", b""),
    ],
    ids=["manifest-cut", "manifest-list", "manifest-artifacts", "root-bytes", "nested", "assets"],
)
def test_cli_damaged_cloud_assembly_is_one_line_and_exit_2(
    synth: Synth,
    tmp_path: Path,
    which: str,
    content: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A corrupt manifest, template or asset list is bad input (exit 2, one line naming the
    file and saying to synthesize again), not a traceback with exit 1 ("a check failed")."""
    damaged = _damaged(synth, tmp_path, which, content)
    argv = ["preflight", "--cdk-out", str(damaged.parent), "--suffix", TEST_SUFFIX]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"govdr: {damaged} ") and err.count("\n") == 1, err
    assert err.rstrip().endswith(
        "the cloud assembly is damaged; run `make synth SUFFIX=<suffix>` again"
    )


@pytest.mark.parametrize(("efs", "code"), [(True, 0), (False, 1)])
def test_cli_json_and_exit_codes(
    synth: Synth,
    plan: Plan,
    stubs: Stubs,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    efs: bool,
    code: int,
) -> None:
    from govdr.preflight import command

    _all_pass(plan, stubs, backup_efs=efs)
    monkeypatch.setattr(command, "aws_clients", lambda region, endpoint=None: stubs)
    original = command.run
    monkeypatch.setattr(command, "run", lambda p, c: original(p, c, workers=1))
    argv = ["preflight", "--json", "--cdk-out", str(synth.outdir), "--suffix", TEST_SUFFIX]
    assert main(argv) == code
    report = json.loads(capsys.readouterr().out)
    assert set(report) == REPORT_KEYS
    assert report["verdict"] == (PASS if efs else FAIL)


def test_help_lists_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    """`govdr preflight --help` names every check by its id (output-plugins was missing)."""
    with pytest.raises(SystemExit) as exited:
        main(["preflight", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    listed = re.findall(r"^  ([a-z][a-z-]+)  +\S", text, re.MULTILINE)
    assert listed == [c.id for c in checks.CHECKS], text
    for entry in checks.CHECKS:
        assert re.search(rf"^  {entry.id} +{re.escape(entry.title)}$", text, re.MULTILINE), entry.id


def test_make_deploy_runs_preflight_first_and_deploys_what_it_checked() -> None:
    """`make deploy` stops on a preflight FAIL (exit 1 stops make) before `cdk deploy`."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    plan_lines = subprocess.run(
        ["make", "-n", "deploy", "SUFFIX=qa7"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    preflight = next(i for i, line in enumerate(plan_lines) if "govdr.cli.main preflight" in line)
    deploy = next(i for i, line in enumerate(plan_lines) if "cdk deploy TapStackqa7" in line)
    assert preflight < deploy
    assert "--suffix qa7 --cdk-out cdk.out" in plan_lines[preflight]
    assert "--app cdk.out" in plan_lines[deploy]


def test_clients_use_the_partitions_home_region_for_global_reads() -> None:
    from govdr.preflight.command import aws_clients, partition_of

    clients = aws_clients(REGION)
    assert clients("ec2", False).meta.region_name == REGION
    assert clients("sts", True).meta.region_name == "us-east-1"
    assert clients("ec2", False) is clients("ec2", False)  # one client per service
    assert [partition_of(r) for r in ("cn-north-1", "us-gov-west-1", REGION)] == [
        "aws-cn",
        "aws-us-gov",
        "aws",
    ]
    emulated = aws_clients(REGION, "http://localhost:4566")
    assert emulated("sts", True).meta.region_name == REGION
    assert emulated("sts", True).meta.endpoint_url == "http://localhost:4566"
