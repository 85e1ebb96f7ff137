"""``govdr preflight``: run every check in parallel against the target account, report.

Exit codes: 0 nothing failed (UNKNOWN does not fail: it names what preflight could not
read), 1 a check failed, 2 preflight could not run (no cloud assembly, no credentials, bad
input).
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from govdr.preflight.checks import CHECKS, FAIL, PASS, UNKNOWN, Check, Clients, Context, run_check
from govdr.preflight.plan import Plan, PlanError, load_plan

DEFAULT_ASSEMBLY = Path("cdk.out")
REPORT_VERSION = 1
# Where STS, the Account API and the region list answer for each partition even when the
# target region is not enabled (https://docs.aws.amazon.com/general/latest/gr/rande.html).
HOME_REGIONS = {"aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]$")


class PreflightError(ValueError):
    """Preflight cannot run; the message says what was wrong and what to do."""


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def aws_clients(region: str, endpoint: str | None = None) -> Clients:
    """boto3 clients with short timeouts: the target region's, or the partition's home
    region's; all of them the emulator's when ``endpoint`` is set."""
    import boto3
    from botocore.config import Config

    from govdr.aws import LOCAL_ENDPOINT_ACCESS

    # A local emulator is not throttled: one attempt, so what it cannot answer is UNKNOWN
    # at once; AWS gets the standard retries.
    config = Config(
        connect_timeout=5,
        read_timeout=20,
        retries={"mode": "standard", "max_attempts": 1 if endpoint else 3},
    )
    session = boto3.session.Session(**(LOCAL_ENDPOINT_ACCESS if endpoint else {}))
    home = HOME_REGIONS[partition_of(region)]
    made: dict[tuple[str, bool], Any] = {}
    lock = threading.Lock()

    def client(service: str, at_home: bool) -> Any:
        with lock:
            key = (service, at_home)
            if key not in made:
                made[key] = session.client(
                    service,
                    region_name=home if at_home and not endpoint else region,
                    endpoint_url=endpoint,
                    config=config,
                )
            return made[key]

    return client


def caller_identity(clients: Clients) -> dict[str, str]:
    """sts:GetCallerIdentity (needs no permission); credentials missing -> PreflightError."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        found = clients("sts", True).get_caller_identity()
    except NoCredentialsError:
        raise PreflightError(
            "no AWS credentials found: configure them (AWS_PROFILE, aws configure, aws sso "
            "login, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and run preflight again"
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise PreflightError(
            f"the AWS credentials were rejected ({code}): refresh them (e.g. aws sso login) and "
            "run preflight again"
        ) from None
    except BotoCoreError as exc:
        raise PreflightError(f"sts:GetCallerIdentity failed: {exc}") from None
    return {"account": str(found["Account"]), "arn": str(found["Arn"])}


def run(
    plan: Plan, clients: Clients, checks: Sequence[Check] = CHECKS, workers: int | None = None
) -> dict[str, Any]:
    """The preflight report of ``plan`` against the account behind ``clients``; the checks
    run in parallel (``workers`` at a time, all by default)."""
    started = time.monotonic()
    who = caller_identity(clients)
    ctx = Context(
        plan=plan,
        clients=clients,
        account=who["account"],
        caller_arn=who["arn"],
        partition=partition_of(plan.region),
    )
    with ThreadPoolExecutor(max_workers=workers or len(checks)) as pool:
        results = list(pool.map(lambda c: run_check(c, ctx), checks))
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, UNKNOWN)}
    return {
        "version": REPORT_VERSION,
        "stack": plan.stack_name,
        "region": plan.region,
        "account": who["account"],
        "caller": who["arn"],
        "verdict": FAIL if counts[FAIL] else PASS,
        "counts": counts,
        "seconds": round(time.monotonic() - started, 2),
        "checks": [r.as_dict() for r in results],
    }


def exit_code(report: dict[str, Any]) -> int:
    return 1 if report["verdict"] == FAIL else 0


def render(report: dict[str, Any]) -> str:
    width = max(len(c["id"]) for c in report["checks"])
    lines = [
        f"preflight of {report['stack']} in {report['region']} (account {report['account']}, "
        f"as {report['caller']}): {len(report['checks'])} checks in {report['seconds']:.1f} s"
    ]
    for check in report["checks"]:
        lines.append(f"{check['status']:<7} {check['id']:<{width}}  {check['detail']}")
        if check["status"] != PASS:
            if check["fix"]:
                lines.append(f"{'':<7} {'':<{width}}  fix: {check['fix']}")
            lines.append(f"{'':<7} {'':<{width}}  doc: {check['doc']}")
    counts = report["counts"]
    lines.append(
        f"verdict: {report['verdict']} ({counts[PASS]} PASS, {counts[FAIL]} FAIL, "
        f"{counts[UNKNOWN]} UNKNOWN: UNKNOWN does not fail, it names what could not be read)"
    )
    return "\n".join(lines)


def plan_for(args: argparse.Namespace) -> Plan:
    if args.region is not None and not _REGION_RE.match(args.region):
        raise PreflightError(
            f"--region {args.region!r} is not an AWS region name (e.g. eu-central-2)"
        )
    if args.stack:
        stack = args.stack
    else:
        suffix = args.suffix or os.environ.get("ENVIRONMENT_SUFFIX") or "dev"
        stack = f"TapStack{suffix}"
    try:
        return load_plan(args.cdk_out, stack, args.region)
    except PlanError as exc:
        raise PreflightError(str(exc)) from None


def cmd_preflight(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    plan = plan_for(args)
    report = run(plan, aws_clients(plan.region, os.environ.get("AWS_ENDPOINT_URL") or None))
    return report, exit_code(report)


def help_description(checks: Sequence[Check] = CHECKS) -> str:
    """What ``govdr preflight --help`` says: every check by id, then the exit codes."""
    import textwrap

    width = max(len(c.id) for c in checks)
    intro = textwrap.fill(
        "Check, with read-only calls, what the synthesized stack needs from the account and "
        "region. The checks:",
        width=78,
    )
    listed = "\n".join(f"  {c.id:<{width}}  {c.title}" for c in checks)
    codes = "Exit 0: nothing failed (UNKNOWN does not fail); 1: a check failed; 2: could not run."
    return f"{intro}\n{listed}\n\n{codes}"


def add_command(groups: Any) -> None:
    """Add ``preflight`` to the top-level subparsers of ``govdr``."""
    p = groups.add_parser(
        "preflight",
        help="read-only checks of the target account and region before a deploy",
        description=help_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument("--suffix", help="environment suffix (default $ENVIRONMENT_SUFFIX or dev)")
    target.add_argument("--stack", help="stack name, e.g. TapStackdev")
    p.add_argument(
        "--cdk-out",
        type=Path,
        default=DEFAULT_ASSEMBLY,
        help=f"synthesized cloud assembly (default {DEFAULT_ASSEMBLY}; `make synth` writes it)",
    )
    p.add_argument(
        "--region",
        help="target region (default: the region the stack was synthesized for, else eu-central-2)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_preflight, renders="preflight", renderer=render)
