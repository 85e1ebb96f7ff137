"""The ``govdr status`` and ``govdr drill ...`` commands (wired into govdr.cli.main).

Exit codes: 0 objectives met, 1 an objective is breached (or a restore did not verify),
2 the command could not run (bad input, missing outputs, unsuitable database).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govdr.config import REGION, RTO_OBJECTIVE_SECONDS
from govdr.drills import failover, restore
from govdr.drills.probe import psycopg_probe
from govdr.drills.status import gather, load_outputs, platform_alarms_in_alarm, stack_name_for
from govdr.emulator.deploy import Aws
from govdr.tools.outputs import DEFAULT_OUT
from runtime.rpo_monitor.handler import NAMESPACE as RPO_NAMESPACE

METRIC_NAMESPACE = RPO_NAMESPACE  # drill figures sit beside RpoSeconds
# clock / now / sleep overrides for the drills (tests run them on a simulated clock)
DRILL_TIMING: dict[str, Any] = {}
EMULATOR_NOTE = (
    "AWS_ENDPOINT_URL is set (the embedded emulator): it runs no PostgreSQL and cannot fail "
    "over, so no connection can be probed here"
)


class Session:
    """AWS clients for the region; the embedded emulator's when AWS_ENDPOINT_URL is set."""

    def __init__(self) -> None:
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
        self.emulated = endpoint is not None
        self.aws = Aws(endpoint, region=os.environ.get("AWS_REGION", REGION))

    def client(self, service: str) -> Any:
        return self.aws.client(service)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _outputs(args: argparse.Namespace, session: Session) -> dict[str, str]:
    return load_outputs(args.outputs, args.stack, session.client)


def _dsn(session: Session, outputs: dict[str, str], host: str, port: int, args: Any) -> str:
    """A libpq DSN with the master credentials, read from Secrets Manager (never printed)."""
    import psycopg2.extensions

    secret = json.loads(
        session.client("secretsmanager").get_secret_value(SecretId=outputs["DatabaseSecretArn"])[
            "SecretString"
        ]
    )
    extra = {"sslrootcert": str(args.sslrootcert)} if args.sslrootcert else {}
    dsn: str = psycopg2.extensions.make_dsn(
        host=host,
        port=port,
        user=secret["username"],
        password=secret["password"],
        dbname=secret.get("dbname") or "postgres",
        sslmode="verify-full" if args.sslrootcert else "require",
        application_name="govdr-drill",
        **extra,
    )
    return dsn


def _record(report: dict[str, Any], args: argparse.Namespace, session: Session) -> Path:
    """Write the report file and publish its figure as a metric."""
    args.reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path: Path = args.reports_dir / f"{report['drill']}-{report['environment']}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    figure = {"failover": "rto_seconds", "restore": "restore_seconds"}[report["drill"]]
    if report.get(figure) is None:
        return path
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        session.client("cloudwatch").put_metric_data(
            Namespace=METRIC_NAMESPACE,
            MetricData=[
                {
                    "MetricName": "FailoverRtoSeconds"
                    if report["drill"] == "failover"
                    else "RestoreSeconds",
                    "Dimensions": [{"Name": "Environment", "Value": report["environment"]}],
                    "Value": float(report[figure]),
                    "Unit": "Seconds",
                }
            ],
        )
    except (BotoCoreError, ClientError) as exc:
        # The measurement is on disk; a missing cloudwatch:PutMetricData must not hide it.
        _progress(f"warning: the figure was not published to {METRIC_NAMESPACE}: {exc}")
    return path


def cmd_status(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    session = Session()
    status = gather(session.client, _outputs(args, session))
    return status, 1 if status["breaches"] else 0


def _objective(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise failover.DrillError(
            f"--objective {value} is not a finite positive number of seconds; pass e.g. "
            f"--objective {RTO_OBJECTIVE_SECONDS}"
        )
    return value


def _guard(
    args: argparse.Namespace,
    session: Session,
    outputs: dict[str, str],
    db: dict[str, Any],
    action: str,
) -> None:
    """Name the target, then refuse without ``--confirm <instance-id>`` or while any of the
    environment's platform alarms is in ALARM (a drill would hide or worsen an incident)."""
    instance = db["DBInstanceIdentifier"]
    suffix = outputs["EnvironmentSuffix"]
    _progress(
        f"target: stack {stack_name_for(suffix)}, instance {instance}, primary AZ "
        f"{db.get('AvailabilityZone')} (standby {db.get('SecondaryAvailabilityZone')}); "
        f"this drill {action}"
    )
    if args.confirm != instance:
        given = "no --confirm" if args.confirm is None else f"--confirm {args.confirm}"
        raise failover.DrillError(
            f"{given} does not name the target instance {instance}; check the target above "
            f"and pass --confirm {instance} (or --dry-run to only see the plan)"
        )
    in_alarm = platform_alarms_in_alarm(session.client("cloudwatch"), suffix)
    if in_alarm:
        raise failover.DrillError(
            f"platform alarm(s) in ALARM: {', '.join(in_alarm)}; a drill now could turn an "
            "incident into an outage or data loss: resolve them first (govdr status), then retry"
        )


def _drill_targets(args: argparse.Namespace) -> tuple[Session, dict[str, str], Any, str]:
    _objective(args.objective)
    session = Session()
    outputs = _outputs(args, session)
    return session, outputs, session.client("rds"), outputs["DatabaseInstanceIdentifier"]


def cmd_failover(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    session, outputs, rds, instance = _drill_targets(args)
    template = outputs.get("FailoverDrillTemplateId") if args.via_fis else None
    if args.via_fis and not template:
        raise failover.DrillError("the outputs have no FailoverDrillTemplateId: redeploy")
    if args.dry_run:
        db = failover.describe_instance(rds, instance)
        lines = failover.plan(db, template, args.objective)
        if session.emulated:
            lines.append(f"note: {EMULATOR_NOTE}")
        return {"drill": "failover", "dry_run": True, "plan": lines}, 0
    if session.emulated:
        raise failover.DrillError(
            f"{EMULATOR_NOTE}; run `govdr drill failover --dry-run` here, or the drill against "
            "a real deployment (make outputs)"
        )
    db = failover.describe_instance(rds, instance)
    _guard(args, session, outputs, db, "forces a Multi-AZ failover (reboot with failover)")
    endpoint = db["Endpoint"]
    probe = psycopg_probe(_dsn(session, outputs, endpoint["Address"], endpoint["Port"], args))
    report = failover.run_failover(
        rds,
        instance,
        probe,
        objective=args.objective,
        fis=session.client("fis") if template else None,
        fis_template_id=template,
        progress=_progress,
        **DRILL_TIMING,
    )
    report["environment"] = outputs["EnvironmentSuffix"]
    # Written whatever the outcome, also after an error or timeout once the failover was asked.
    report["report_file"] = str(_record(report, args, session))
    if report.get("error"):
        _progress(f"drill failed: {report['error']} (report {report['report_file']})")
    return report, 0 if report["met"] else 1


def cmd_restore(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    session, outputs, rds, instance = _drill_targets(args)
    suffix = outputs["EnvironmentSuffix"]
    target = restore.drill_instance_id(suffix)
    if args.dry_run:
        lines = restore.plan(failover.describe_instance(rds, instance), target)
        if session.emulated:
            lines.append(f"note: {EMULATOR_NOTE}; the restore would not be verified")
        return {"drill": "restore", "dry_run": True, "plan": lines}, 0
    _guard(
        args,
        session,
        outputs,
        failover.describe_instance(rds, instance),
        f"creates {target} from a point-in-time restore and deletes it",
    )

    def probe_for(host: str, port: int) -> Any:
        return psycopg_probe(_dsn(session, outputs, host, port, args), query=restore.CANARY)

    report = restore.run_restore(
        rds,
        instance,
        suffix,
        None if session.emulated else probe_for,
        objective=args.objective,
        progress=_progress,
        **DRILL_TIMING,
    )
    if session.emulated:
        report["verification"] = EMULATOR_NOTE
    report["environment"] = suffix
    report["report_file"] = str(_record(report, args, session))
    return report, 1 if report["met"] is False else 0


def add_commands(groups: Any) -> None:
    """Add ``status`` and ``drill {failover,restore}`` to the top-level subparsers."""

    def targets(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--outputs",
            type=Path,
            default=DEFAULT_OUT,
            help=f"flat stack outputs (default {DEFAULT_OUT}; `make outputs` writes it)",
        )
        p.add_argument(
            "--stack",
            help="read the outputs of this stack (TapStack<suffix>); it wins over the outputs "
            "file, which must then describe the same environment",
        )
        p.add_argument("--json", action="store_true", help="print JSON")

    status = groups.add_parser(
        "status", help="RPO, Multi-AZ, failovers, rotation, archive lag and alarms, now"
    )
    targets(status)
    status.set_defaults(func=cmd_status, renders="status")

    drill = groups.add_parser("drill", help="failover and restore drills that measure RTO")
    kinds = drill.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        targets(p)
        p.add_argument("--dry-run", action="store_true", help="print what would happen, only")
        p.add_argument("--reports-dir", type=Path, default=Path("reports"), help="where reports go")
        p.add_argument(
            "--objective",
            type=float,
            default=float(RTO_OBJECTIVE_SECONDS),
            help=f"seconds the drill must stay below (default: RTO {RTO_OBJECTIVE_SECONDS})",
        )
        p.add_argument(
            "--sslrootcert",
            type=Path,
            help="RDS CA bundle: verify the server certificate (sslmode=verify-full)",
        )
        p.add_argument(
            "--confirm",
            metavar="INSTANCE_ID",
            help="the target's DatabaseInstanceIdentifier, exactly: required unless --dry-run",
        )

    fail = kinds.add_parser("failover", help="force a Multi-AZ failover and measure RTO")
    common(fail)
    fail.add_argument(
        "--via-fis", action="store_true", help="start the FIS experiment template instead"
    )
    fail.set_defaults(func=cmd_failover, renders="report")

    rest = kinds.add_parser(
        "restore", help="point-in-time restore into a new instance, verify, delete"
    )
    common(rest)
    rest.set_defaults(func=cmd_restore, renders="report")


def render(result: dict[str, Any]) -> str:
    if "plan" in result:
        return "\n".join(result["plan"])
    lines = []
    for key, value in result.items():
        if key in ("events", "breaches", "alarms_in_alarm", "last_failover_event"):
            continue
        lines.append(f"{key}: {value}")
    for event in result.get("events", []):
        lines.append(f"event {event['time']}: {event['message']}")
    if result.get("last_failover_event"):
        event = result["last_failover_event"]
        lines.append(f"last failover event: {event['time']} {event['message']}")
    if "alarms_in_alarm" in result:
        lines.append("alarms in ALARM: " + (", ".join(result["alarms_in_alarm"]) or "none"))
    if "breaches" in result:
        lines.append(
            "objectives: "
            + ("met" if not result["breaches"] else "BREACHED: " + "; ".join(result["breaches"]))
        )
    elif "met" in result:
        verdict = {True: "met", False: "BREACHED", None: "not verified"}[result["met"]]
        lines.append(f"objective: {verdict}")
    return "\n".join(lines)
