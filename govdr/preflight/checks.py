"""The checks of ``govdr preflight``: facts of the target account and region, read-only.

Each check answers PASS, FAIL (with the one-line fix) or UNKNOWN (the call was refused or is
not answered: the missing permission is named). A check never writes to the account.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from govdr.config import ARCHIVER_OUTPUT_PLUGIN
from govdr.engine import major_of_family
from govdr.preflight.permissions import deploy_actions
from govdr.preflight.plan import Plan

PASS = "PASS"  # noqa: S105 - a verdict, not a password
FAIL = "FAIL"
UNKNOWN = "UNKNOWN"

# Error codes that mean "the principal may not make this call".
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "UnauthorizedAccess",
    "Forbidden",
    "403",
}
# The plugin the transaction-log archiver decodes with (govdr/txlog/runtime).
ARCHIVER_PLUGIN = ARCHIVER_OUTPUT_PLUGIN
OUTPUT_PLUGIN_PARAMETER = "output_plugin_libraries"
TRAILS_PER_REGION = 5
SIMULATION_BATCH = 50
# Lambda keeps this much of the account's concurrency unreserved ("You can reserve up to the
# Unreserved account concurrency value minus 100"):
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html
# Accounts with a smaller quota keep all of it: PutFunctionConcurrency then answers "decreases
# account's UnreservedConcurrentExecution below its minimum value of [10]" at quota 10.
LAMBDA_UNRESERVED_MINIMUM = 100


@dataclass
class Result:
    id: str
    title: str
    status: str
    detail: str
    fix: str | None
    doc: str
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "doc": self.doc,
            "seconds": round(self.seconds, 2),
        }


class Unknown(Exception):
    """A fact could not be read; ``detail`` says why, ``fix`` what would let preflight read it."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


Clients = Callable[[str, bool], Any]
"""``clients(service, home)``: a boto3 client for the target region (home=False) or for the
partition's home region (home=True: STS, the Account API and region listing work there even
when the target region is not enabled)."""


@dataclass
class Context:
    plan: Plan
    clients: Clients
    account: str
    caller_arn: str
    partition: str = "aws"
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def region(self) -> str:
        return self.plan.region

    def client(self, service: str, *, home: bool = False) -> Any:
        return self.clients(service, home)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key across threads (an Unknown is remembered too)."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                try:
                    self._memo[key] = ("ok", compute())
                except Unknown as exc:
                    self._memo[key] = ("unknown", exc)
            kind, value = self._memo[key]
        if kind == "unknown":
            raise value
        return value


def call(action: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    """One AWS call; refusals and unanswerable calls become :class:`Unknown`."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        return method(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _DENIED or "AccessDenied" in code:
            raise Unknown(
                f"{action} was refused ({code})",
                f"allow {action} (read-only) to the principal running preflight",
            ) from None
        if code in {"404", "501", "NotImplemented", "InvalidAction"}:
            raise Unknown(
                f"{action} is not answered by this endpoint ({code})",
                "run preflight against the AWS account itself",
            ) from None
        raise
    except NotImplementedError:
        # what moto raises in-process for a call it lacks (its server answers HTTP 500)
        raise Unknown(
            f"{action} is not answered by this endpoint (not implemented)",
            "run preflight against the AWS account itself",
        ) from None
    except ResponseParserError:
        raise Unknown(
            f"{action} got no parseable answer from the endpoint (not implemented there?)",
            "run preflight against the AWS account itself",
        ) from None
    except BotoCoreError as exc:
        raise Unknown(f"{action} failed: {exc}", "check the network path to the endpoint") from None


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _pages(action: str, client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    def collect() -> list[Any]:
        items: list[Any] = []
        for page in client.get_paginator(operation).paginate(**kwargs):
            items.extend(page.get(key, []) if "." not in key else _dig(page, key))
        return items

    return list(call(action, collect))


def _dig(page: dict[str, Any], path: str) -> list[Any]:
    value: Any = page
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, list) else []


# --- 1. region enabled -----------------------------------------------------------------------
REGION_DOC = "https://docs.aws.amazon.com/accounts/latest/reference/API_GetRegionOptStatus.html"


def region_enabled(ctx: Context) -> tuple[str, str, str | None]:
    from botocore.exceptions import ClientError

    fix = f"enable the region: aws account enable-region --region-name {ctx.region} (then wait)"
    missing = (
        FAIL,
        f"region {ctx.region} does not exist",
        "check --region / the configured region (without --region: the stack's region in the "
        "cloud assembly)",
    )
    try:
        try:
            status = call(
                "account:GetRegionOptStatus",
                ctx.client("account", home=True).get_region_opt_status,
                RegionName=ctx.region,
            )["RegionOptStatus"]
        except ClientError as exc:
            # a region name the Account API does not know fails its input validation:
            # https://docs.aws.amazon.com/accounts/latest/reference/API_GetRegionOptStatus.html#API_GetRegionOptStatus_Errors
            if _error_code(exc) == "ValidationException":
                return missing
            raise
        # ENABLED, ENABLED_BY_DEFAULT, ENABLING, DISABLING, DISABLED
        if status in {"ENABLED", "ENABLED_BY_DEFAULT"}:
            return PASS, f"{ctx.region} is {status}", None
        if status == "ENABLING":
            return FAIL, f"{ctx.region} is still ENABLING", "wait until it is ENABLED, then retry"
        return FAIL, f"{ctx.region} is {status}", fix
    except Unknown as first:
        # With AllRegions, EC2 lists every region of the partition with its opt-in status,
        # enabled or not; a region it does not list does not exist:
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeRegions.html
        try:
            regions = call(
                "ec2:DescribeRegions",
                ctx.client("ec2", home=True).describe_regions,
                AllRegions=True,
            )["Regions"]
        except Unknown as second:
            raise Unknown(
                f"{first.detail}; {second.detail}",
                "allow account:GetRegionOptStatus or ec2:DescribeRegions",
            ) from None
        listed = [r for r in regions if r.get("RegionName") == ctx.region]
        if not listed:
            return missing
        status = str(listed[0].get("OptInStatus", ""))
        if status in {"opt-in-not-required", "opted-in"}:
            return PASS, f"{ctx.region} is {status} (ec2:DescribeRegions)", None
        return FAIL, f"{ctx.region} is {status} (ec2:DescribeRegions)", fix


# --- 2. CDK bootstrap -------------------------------------------------------------------------
BOOTSTRAP_DOC = "https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-env.html"


def bootstrap_version(ctx: Context) -> int | None:
    """The version the account's bootstrap stack published, None when there is none."""

    def read() -> int | None:
        from botocore.exceptions import ClientError

        name = ctx.plan.bootstrap_parameter
        try:
            value = call("ssm:GetParameter", ctx.client("ssm").get_parameter, Name=name)
        except ClientError as exc:
            if _error_code(exc) == "ParameterNotFound":
                return None
            raise
        text = str(value["Parameter"]["Value"])
        return int(text) if text.isdigit() else 0

    result: int | None = ctx.once("bootstrap-version", read)
    return result


def cdk_bootstrap(ctx: Context) -> tuple[str, str, str | None]:
    required = ctx.plan.required_bootstrap_version
    name = ctx.plan.bootstrap_parameter
    fix = f"bootstrap with the pinned CLI: npx cdk bootstrap aws://{ctx.account}/{ctx.region}"
    found = bootstrap_version(ctx)
    if found is None:
        return FAIL, f"{name} does not exist: {ctx.region} is not bootstrapped", fix
    if required is not None and found < required:
        return FAIL, f"bootstrap version {found} < {required} required by the template", fix
    need = f" (the template requires >= {required})" if required is not None else ""
    return PASS, f"bootstrap version {found}{need}", None


# --- 3. Lambda concurrency --------------------------------------------------------------------
LAMBDA_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"


def least_passing_quota(total: int, unreserved: int, reserved: int) -> int:
    """The least quota Q at which reserving ``reserved`` more leaves the minimum unreserved.

    What others already reserve (``total - unreserved``) stays reserved at Q, and the minimum
    grows with the quota (min(100, Q)): with anything reserved, a quota below 100 never leaves
    all of it unreserved, so Q is 100 above everything reserved.
    """
    already = max(total - unreserved, 0)
    if already + reserved == 0:
        return total
    return already + reserved + LAMBDA_UNRESERVED_MINIMUM


def lambda_concurrency(ctx: Context) -> tuple[str, str, str | None]:
    # https://docs.aws.amazon.com/lambda/latest/api/API_GetAccountSettings.html
    limit = call("lambda:GetAccountSettings", ctx.client("lambda").get_account_settings)[
        "AccountLimit"
    ]
    total = int(limit.get("ConcurrentExecutions", 0))
    unreserved = int(limit.get("UnreservedConcurrentExecutions", 0))
    reserved = ctx.plan.reserved_concurrency
    minimum = min(LAMBDA_UNRESERVED_MINIMUM, total)
    detail = (
        f"unreserved {unreserved} of {total}; the templates reserve {reserved}; "
        f"at least {minimum} must stay unreserved"
    )
    if reserved and unreserved - reserved < minimum:
        return (
            FAIL,
            detail,
            f"raise the Lambda 'Concurrent executions' quota in {ctx.region} (Service Quotas "
            f"L-B99A9384) to at least {least_passing_quota(total, unreserved, reserved)}, "
            "or reserve less",
        )
    return PASS, detail, None


# --- 4. engine version and instance class -----------------------------------------------------
ENGINE_DOC = (
    "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DescribeDBEngineVersions.html"
)
ORDERABLE_DOC = (
    "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/"
    "API_DescribeOrderableDBInstanceOptions.html"
)


def _database(ctx: Context) -> Any:
    databases = ctx.plan.databases
    if not databases:
        raise Unknown("the templates create no RDS instance", "nothing to check")
    return databases[0]


def resolved_engine_version(ctx: Context) -> str:
    """The engine version RDS creates for the template's EngineVersion (a major picks RDS's
    default minor of that major, "DefaultOnly")."""
    db = _database(ctx)

    def resolve() -> str:
        rds = ctx.client("rds")
        major_only = "." not in db.engine_version
        versions = call(
            "rds:DescribeDBEngineVersions",
            rds.describe_db_engine_versions,
            Engine=db.engine,
            EngineVersion=db.engine_version,
            DefaultOnly=major_only,
        )["DBEngineVersions"]
        usable = [v for v in versions if v.get("Status", "available") == "available"]
        if not usable:
            raise _NotCreatable(db.engine_version, [v.get("Status") for v in versions])
        return str(usable[0]["EngineVersion"])

    version: str = ctx.once("engine-version", resolve)
    return version


class _NotCreatable(Unknown):
    def __init__(self, version: str, statuses: list[Any]) -> None:
        state = f" (status {', '.join(str(s) for s in statuses)})" if statuses else ""
        super().__init__(f"engine version {version} is not available{state}", "")
        self.version = version


def engine_version(ctx: Context) -> tuple[str, str, str | None]:
    db = _database(ctx)
    try:
        version = resolved_engine_version(ctx)
    except _NotCreatable as exc:
        major = db.engine_version.split(".", 1)[0]
        offered = call(
            "rds:DescribeDBEngineVersions",
            ctx.client("rds").describe_db_engine_versions,
            Engine=db.engine,
            DBParameterGroupFamily=f"{db.engine}{major}",
        )["DBEngineVersions"]
        names = [str(v["EngineVersion"]) for v in offered if v.get("Status") == "available"]
        return (
            FAIL,
            f"{db.engine} {exc.detail} in {ctx.region}",
            f"set -c engineVersion= to {major} or one of: {', '.join(names) or 'none offered'}"
            if names
            else f"choose another major (-c engineVersion=): {db.engine} {major} is not offered",
        )
    shown = (
        db.engine_version if version == db.engine_version else f"{db.engine_version} -> {version}"
    )
    return PASS, f"{db.engine} {shown} is available in {ctx.region}", None


def instance_class(ctx: Context) -> tuple[str, str, str | None]:
    db = _database(ctx)
    try:
        version: str | None = resolved_engine_version(ctx)
    except Unknown:
        version = None
    kwargs: dict[str, Any] = {
        "Engine": db.engine,
        "DBInstanceClass": db.instance_class,
        "Vpc": True,
    }
    if version:
        kwargs["EngineVersion"] = version
    options = _pages(
        "rds:DescribeOrderableDBInstanceOptions",
        ctx.client("rds"),
        "describe_orderable_db_instance_options",
        "OrderableDBInstanceOptions",
        **kwargs,
    )
    if version is None:
        major = db.engine_version.split(".", 1)[0]
        options = [o for o in options if str(o.get("EngineVersion", "")).split(".")[0] == major]
    what = f"{db.instance_class} ({db.engine} {version or db.engine_version})"
    fix = (
        f"choose an instance class offered in {ctx.region} (-c instanceClass=...): aws rds "
        f"describe-orderable-db-instance-options --engine {db.engine} --query "
        "'OrderableDBInstanceOptions[?MultiAZCapable].DBInstanceClass'"
    )
    if not options:
        return FAIL, f"{what} is not orderable in {ctx.region}", fix
    fitting = [
        o
        for o in options
        if o.get("StorageType") == db.storage_type and (o.get("MultiAZCapable") or not db.multi_az)
    ]
    mode = "Multi-AZ " if db.multi_az else ""
    if not fitting:
        return FAIL, f"{what} is not orderable {mode}with storage {db.storage_type}", fix
    zones = {z["Name"] for o in fitting for z in o.get("AvailabilityZones", [])}
    missing = [z for z in ctx.plan.availability_zones if zones and z not in zones]
    if missing:
        return FAIL, f"{what} is not orderable in {', '.join(missing)}", fix
    return PASS, f"{what} is orderable {mode}with {db.storage_type}", None


# --- 5. interface endpoints -------------------------------------------------------------------
ENDPOINT_DOC = (
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeVpcEndpointServices.html"
)


def endpoint_services(ctx: Context) -> tuple[str, str, str | None]:
    wanted = ctx.plan.interface_endpoint_services
    zones = ctx.plan.availability_zones
    if not wanted:
        return PASS, "the templates create no interface endpoint", None
    details = _pages(
        "ec2:DescribeVpcEndpointServices",
        ctx.client("ec2"),
        "describe_vpc_endpoint_services",
        "ServiceDetails",
        Filters=[{"Name": "service-name", "Values": sorted(wanted)}],
    )
    offered = {d["ServiceName"]: set(d.get("AvailabilityZones", [])) for d in details}
    problems = []
    for service in sorted(wanted):
        if service not in offered:
            problems.append(f"{service} is not offered")
            continue
        missing = [z for z in zones if z not in offered[service]]
        if missing:
            problems.append(f"{service} is not offered in {', '.join(missing)}")
    if problems:
        return (
            FAIL,
            "; ".join(problems),
            "drop the endpoint or move its subnets to zones that offer it (govdr/stacks/"
            "network.py); the service's own list: aws ec2 describe-vpc-endpoint-services",
        )
    return PASS, f"{len(wanted)} services offered in {', '.join(zones)}", None


# --- 6. parameter groups ----------------------------------------------------------------------
PARAMETERS_DOC = (
    "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/"
    "API_DescribeEngineDefaultParameters.html"
)
OUTPUT_PLUGIN_DOC = (
    "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/"
    "Appendix.PostgreSQL.CommonDBATasks.Parameters.html"
)
_RANGE_RE = re.compile(r"^(-?[0-9.]+)-(-?[0-9.]+)$")


def family_defaults(ctx: Context, family: str) -> dict[str, dict[str, Any]]:
    def read() -> dict[str, dict[str, Any]]:
        parameters = _pages(
            "rds:DescribeEngineDefaultParameters",
            ctx.client("rds"),
            "describe_engine_default_parameters",
            "EngineDefaults.Parameters",
            DBParameterGroupFamily=family,
        )
        return {str(p["ParameterName"]): p for p in parameters}

    defaults: dict[str, dict[str, Any]] = ctx.once(f"defaults:{family}", read)
    return defaults


def value_problem(name: str, value: str, default: dict[str, Any] | None) -> str | None:
    """Why RDS would reject ``value`` for the parameter described by ``default``, or None."""
    if default is None:
        return f"{name} does not exist in the family"
    if default.get("IsModifiable") is False:
        return f"{name} cannot be modified"
    allowed = str(default.get("AllowedValues", "") or "")
    if not allowed or value.startswith("{"):
        return None  # free text, or a formula RDS evaluates
    kind = str(default.get("DataType", "string"))
    tokens = [t.strip() for t in allowed.split(",") if t.strip()]
    if kind in {"integer", "float"}:
        try:
            number = float(value)
        except ValueError:
            return f"{name}={value!r} is not a number (allowed: {allowed})"
        for token in tokens:
            span = _RANGE_RE.match(token)
            if span and float(span[1]) <= number <= float(span[2]):
                return None
            if not span and token == value:
                return None
        return f"{name}={value!r} is outside {allowed}"
    items = [v.strip() for v in value.split(",")] if kind == "list" else [value]
    lowered = {t.lower() for t in tokens}
    bad = [v for v in items if v.lower() not in lowered]
    if bad:
        return f"{name}={value!r}: {', '.join(bad)} not in {allowed}"
    return None


def parameter_values(ctx: Context) -> tuple[str, str, str | None]:
    groups = ctx.plan.parameter_groups
    if not groups:
        return PASS, "the templates create no parameter group", None
    problems = []
    checked = 0
    for group in groups:
        defaults = family_defaults(ctx, group.family)
        for name, value in sorted(group.parameters.items()):
            checked += 1
            problem = value_problem(name, value, defaults.get(name))
            if problem:
                problems.append(f"{group.logical_id} ({group.family}): {problem}")
    if problems:
        return (
            FAIL,
            "; ".join(problems),
            "use values the family accepts (govdr/engine.py per major, govdr/stacks/database.py): "
            "aws rds describe-engine-default-parameters --db-parameter-group-family <family>",
        )
    return PASS, f"{checked} values accepted by {', '.join(g.family for g in groups)}", None


def output_plugins(ctx: Context) -> tuple[str, str, str | None]:
    groups = [g for g in ctx.plan.parameter_groups if major_of_family(g.family) is not None]
    if not groups:
        return PASS, "the templates create no PostgreSQL parameter group", None
    problems, notes = [], []
    for group in groups:
        default = family_defaults(ctx, group.family).get(OUTPUT_PLUGIN_PARAMETER)
        if default is None:
            notes.append(f"{group.family} has no {OUTPUT_PLUGIN_PARAMETER} (no restriction)")
            continue
        value = group.parameters.get(OUTPUT_PLUGIN_PARAMETER)
        listed = [v.strip() for v in (value or "").split(",") if v.strip()]
        if ARCHIVER_PLUGIN not in listed:
            problems.append(
                f"{group.family} lists {OUTPUT_PLUGIN_PARAMETER} (default "
                f"{default.get('ParameterValue', 'empty')!r}) and {group.logical_id} "
                f"sets it to {value!r}: the archiver's {ARCHIVER_PLUGIN} would be refused"
            )
        else:
            notes.append(f"{group.logical_id} lists {ARCHIVER_PLUGIN} in {OUTPUT_PLUGIN_PARAMETER}")
    if problems:
        return (
            FAIL,
            "; ".join(problems),
            f"deploy with -c outputPluginLibraries='pgoutput, test_decoding, {ARCHIVER_PLUGIN}' "
            f"(GOVDR_OUTPUT_PLUGIN_LIBRARIES), which sets {OUTPUT_PLUGIN_PARAMETER} in the "
            "parameter group",
        )
    return PASS, "; ".join(notes), None


# --- 7. CloudTrail ----------------------------------------------------------------------------
TRAIL_DOC = (
    "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/WhatIsCloudTrail-Limits.html"
)


def trails(ctx: Context) -> tuple[str, str, str | None]:
    cloudtrail = ctx.client("cloudtrail")
    existing = ctx.plan.existing_trail_arn
    if ctx.plan.creates_trail:
        # Multi-region trails of other home regions show here as shadow trails and count in
        # every region they record ("In shadow Regions, to get latest resource count ..."):
        # https://docs.aws.amazon.com/awscloudtrail/latest/userguide/WhatIsCloudTrail-Limits.html
        listed = call(
            "cloudtrail:DescribeTrails", cloudtrail.describe_trails, includeShadowTrails=True
        )["trailList"]
        # The quota is the account's: trails another account owns (an organization trail
        # seen from a member account) are listed but not counted.
        own = [t for t in listed if f":{ctx.account}:trail/" in str(t.get("TrailARN", ""))]
        names = sorted(str(t.get("Name")) for t in own)
        others = len(listed) - len(own)
        detail = (
            f"{len(own)} of {TRAILS_PER_REGION} trails in {ctx.region}"
            + (f" ({', '.join(names)})" if names else "")
            + (f"; {others} of other accounts not counted" if others else "")
        )
        if len(own) >= TRAILS_PER_REGION:
            return (
                FAIL,
                detail + ": the stack's trail would exceed the quota",
                "delete an unused trail, or record with an existing one: -c existingTrailArn=<arn>",
            )
        return PASS, detail, None
    if not existing:
        return PASS, "the templates create no trail and name none", None
    from botocore.exceptions import ClientError

    missing = (
        FAIL,
        f"trail {existing} does not exist (or is not visible from this account and region)",
        "name an existing trail with -c existingTrailArn=<arn>, or leave it empty to create "
        "the environment's own trail",
    )
    # GetTrailStatus answers TrailNotFoundException for a trail that does not exist:
    # https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_GetTrailStatus.html#API_GetTrailStatus_Errors
    try:
        status = call("cloudtrail:GetTrailStatus", cloudtrail.get_trail_status, Name=existing)
    except ClientError as exc:
        if _error_code(exc) == "TrailNotFoundException":
            return missing
        raise
    # DescribeTrails lists only the trails it finds (an unknown ARN leaves trailList empty):
    # https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_DescribeTrails.html
    found = call(
        "cloudtrail:DescribeTrails",
        cloudtrail.describe_trails,
        trailNameList=[existing],
        includeShadowTrails=True,
    )["trailList"]
    if not found:
        return missing
    problems = []
    if not status.get("IsLogging"):
        problems.append("is not logging")
    if not found[0].get("IsMultiRegionTrail"):
        problems.append("is not multi-region")
    if not found[0].get("LogFileValidationEnabled"):
        problems.append("has no log-file validation")
    if problems:
        return (
            FAIL,
            f"existing trail {existing} " + ", ".join(problems),
            "name a logging, multi-region trail with log-file validation (-c existingTrailArn=), "
            "or leave existingTrailArn empty to create one",
        )
    return PASS, f"existing trail {existing} is logging, multi-region, validated", None


# --- 8. AWS Backup ----------------------------------------------------------------------------
BACKUP_DOC = "https://docs.aws.amazon.com/aws-backup/latest/devguide/service-opt-in.html"
BACKUP_TYPES = ("RDS", "EFS")


def backup_opt_in(ctx: Context) -> tuple[str, str, str | None]:
    # https://docs.aws.amazon.com/aws-backup/latest/devguide/API_DescribeRegionSettings.html
    settings = call(
        "backup:DescribeRegionSettings", ctx.client("backup").describe_region_settings
    ).get("ResourceTypeOptInPreference", {})
    off = [t for t in BACKUP_TYPES if not settings.get(t)]
    if off:
        return (
            FAIL,
            f"AWS Backup is not opted in for {', '.join(off)} in {ctx.region}",
            "aws backup update-region-settings --resource-type-opt-in-preference "
            + ",".join(f"{t}=true" for t in off)
            + f" --region {ctx.region}",
        )
    return PASS, f"opted in for {', '.join(BACKUP_TYPES)}", None


# --- 9. the deploying principal ---------------------------------------------------------------
PERMISSIONS_DOC = (
    "https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html"
)
_ASSUMED_RE = re.compile(r"^arn:(?P<p>[^:]+):sts::(?P<a>[0-9]{12}):assumed-role/(?P<role>[^/]+)/")


def principal_arn(ctx: Context, arn: str) -> str:
    """The IAM ARN to simulate for a caller ARN: an assumed-role session becomes its role
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns);
    the role's path comes from iam:GetRole where allowed."""
    from botocore.exceptions import ClientError

    match = _ASSUMED_RE.match(arn)
    if not match:
        return arn
    try:
        role = call("iam:GetRole", ctx.client("iam", home=True).get_role, RoleName=match["role"])
        return str(role["Role"]["Arn"])
    except (Unknown, ClientError):  # the path-less ARN; the simulation says the rest
        return f"arn:{match['p']}:iam::{match['a']}:role/{match['role']}"


def simulate(
    ctx: Context, source: str, actions: list[str], resource_arns: list[str] | None = None
) -> list[str]:
    """The actions ``source`` may not call in the region, each with what denies it."""
    iam = ctx.client("iam", home=True)
    denied = []
    context = [
        {
            "ContextKeyName": "aws:RequestedRegion",
            "ContextKeyValues": [ctx.region],
            "ContextKeyType": "string",
        }
    ]
    for start in range(0, len(actions), SIMULATION_BATCH):
        results = _pages(
            "iam:SimulatePrincipalPolicy",
            iam,
            "simulate_principal_policy",
            "EvaluationResults",
            PolicySourceArn=source,
            ActionNames=actions[start : start + SIMULATION_BATCH],
            ContextEntries=context,
            **({"ResourceArns": resource_arns} if resource_arns else {}),
        )
        for result in results:
            if result.get("EvalDecision") == "allowed":
                continue
            by = "identity policy"
            if result.get("OrganizationsDecisionDetail", {}).get("AllowedByOrganizations") is False:
                by = "SCP"
            elif (
                result.get("PermissionsBoundaryDecisionDetail", {}).get(
                    "AllowedByPermissionsBoundary"
                )
                is False
            ):
                by = "permissions boundary"
            elif result.get("EvalDecision") == "explicitDeny":
                by = "explicit deny"
            denied.append(f"{result['EvalActionName']} ({by})")
    return denied


def deploy_permissions(ctx: Context) -> tuple[str, str, str | None]:
    from botocore.exceptions import ClientError

    needed, unknown_types = deploy_actions(ctx.plan.resource_types, ctx.region)
    actions = sorted(needed)
    bootstrapped: bool | None = None  # None: the parameter could not be read
    with contextlib.suppress(Unknown):
        bootstrapped = bootstrap_version(ctx) is not None
    exec_role = ctx.plan.role_arn("cloudFormationExecutionRoleArn", ctx.account, ctx.partition)
    deploy_role = ctx.plan.role_arn("assumeRoleArn", ctx.account, ctx.partition)
    caller = principal_arn(ctx, ctx.caller_arn)
    if ":root" in caller:
        raise Unknown(
            "the root user cannot be simulated (only SCPs limit it)",
            "deploy with an IAM role instead of the root user",
        )
    problems: list[str] = []
    denied: list[str] | None = None
    subject = caller
    if exec_role and bootstrapped is not False:
        # cdk deploy assumes the bootstrap's deploy role and hands CloudFormation the
        # execution role, which then makes every resource call:
        # https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-env.html#bootstrapping-env-roles
        try:
            denied = simulate(ctx, exec_role, actions)
            subject = exec_role
        except ClientError as exc:
            if _error_code(exc) != "NoSuchEntity":
                raise
            if bootstrapped:
                return (
                    FAIL,
                    f"{exec_role} does not exist",
                    f"re-run the bootstrap: npx cdk bootstrap aws://{ctx.account}/{ctx.region}",
                )
    if subject == exec_role and deploy_role:
        problems = [
            f"{caller}: {d}" for d in simulate(ctx, caller, ["sts:AssumeRole"], [deploy_role])
        ]
    if denied is None:
        denied = simulate(ctx, caller, actions)
    scope = f"{len(actions)} actions for {len(ctx.plan.resource_types)} resource types"
    skipped = f"; no provider schema for {', '.join(unknown_types)}" if unknown_types else ""
    if denied or problems:
        shown = [*problems, *(f"{subject}: {d}" for d in denied)]
        more = f" and {len(shown) - 8} more" if len(shown) > 8 else ""
        return (
            FAIL,
            f"denied in {ctx.region}: {', '.join(shown[:8])}{more} ({scope})",
            "allow them in the role's policies, its permissions boundary or the organization's "
            f"SCPs for {ctx.region}",
        )
    return PASS, f"{subject} may call all {scope}{skipped}", None


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    doc: str
    run: Callable[[Context], tuple[str, str, str | None]]


CHECKS: tuple[Check, ...] = (
    Check("region-enabled", "region enabled", REGION_DOC, region_enabled),
    Check("cdk-bootstrap", "CDK bootstrap version", BOOTSTRAP_DOC, cdk_bootstrap),
    Check("lambda-concurrency", "Lambda unreserved concurrency", LAMBDA_DOC, lambda_concurrency),
    Check("engine-version", "RDS engine version creatable", ENGINE_DOC, engine_version),
    Check("instance-class", "instance class orderable", ORDERABLE_DOC, instance_class),
    Check("endpoint-services", "interface endpoints in every AZ", ENDPOINT_DOC, endpoint_services),
    Check("parameter-values", "parameter values accepted", PARAMETERS_DOC, parameter_values),
    Check("output-plugins", "logical-decoding plugin allowed", OUTPUT_PLUGIN_DOC, output_plugins),
    Check("cloudtrail", "CloudTrail trail quota or existing trail", TRAIL_DOC, trails),
    Check("backup-opt-in", "AWS Backup opted in for RDS and EFS", BACKUP_DOC, backup_opt_in),
    Check("deploy-permissions", "deploy actions allowed", PERMISSIONS_DOC, deploy_permissions),
)


def run_check(check: Check, ctx: Context) -> Result:
    import time

    from botocore.exceptions import BotoCoreError, ClientError

    started = time.monotonic()
    try:
        status, detail, fix = check.run(ctx)
    except Unknown as exc:
        status, detail, fix = UNKNOWN, exc.detail, exc.fix or None
    except (ClientError, BotoCoreError) as exc:
        status, detail, fix = (
            UNKNOWN,
            f"the request failed: {exc}",
            "retry; if it persists, see the doc",
        )
    return Result(check.id, check.title, status, detail, fix, check.doc, time.monotonic() - started)
