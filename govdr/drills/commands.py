"""The ``govdr status`` and ``govdr drill ...`` commands (wired into govdr.cli.main).

Exit codes: 0 objectives met, 1 an objective is breached (or a restore did not verify),
2 the command could not run (bad input, missing outputs, unsuitable database).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govdr.aws import Aws
from govdr.config import DATABASE_NAME, RTO_OBJECTIVE_SECONDS
from govdr.drills import failover, restore
from govdr.drills.probe import psycopg_probe
from govdr.drills.status import gather, load_outputs, platform_alarms_in_alarm, stack_name_for
from govdr.lambda_support.pg_tls import IAM_TOKEN, SCRAM, TlsSetupError, verified_tls
from govdr.rpo.contract import NAMESPACE as RPO_NAMESPACE
from govdr.tools.outputs import DEFAULT_OUT
from govdr.txlog.contract import DRILL_ROLE

METRIC_NAMESPACE = RPO_NAMESPACE  # drill figures sit beside RpoSeconds
# clock / now / sleep overrides for the drills (tests run them on a simulated clock)
DRILL_TIMING: dict[str, Any] = {}
LOCAL_ENDPOINT_NOTE = (
    "AWS_ENDPOINT_URL is set: the AWS clients go to a local endpoint (such as the embedded "
    "emulator), which runs no PostgreSQL and cannot fail over, so no connection can be probed "
    "here"
)


class Session:
    """AWS clients for the region (govdr.aws); one endpoint's when AWS_ENDPOINT_URL is set."""

    def __init__(self) -> None:
        self.aws = Aws.from_env()
        self.local_endpoint = self.aws.local

    def client(self, service: str) -> Any:
        return self.aws.client(service)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _outputs(args: argparse.Namespace, session: Session) -> dict[str, str]:
    return load_outputs(args.outputs, args.stack, session.client)


AUTH_IAM = "iam"
AUTH_SECRET = "secret"  # noqa: S105 - the name of an authentication mode, not a secret
REDACTED = "[redacted]"
# The restore drill logs in to the instance it restored, whose DbiResourceId exists only once
# it does: an IAM policy for it would have to allow govdr_drill on every instance of the
# account and region (other environments' included), and the restore would have to turn IAM
# authentication on (off by default for a restored instance:
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_RestoreDBInstanceToPointInTime.html).
# It uses this one environment's master secret instead: the restored copy has the master
# password of its restore point, a few minutes old.
RESTORE_AUTH = AUTH_SECRET


class ProbeError(RuntimeError):
    """A connection attempt failed; the message has the credentials taken out."""


def _tls(args: argparse.Namespace, auth: str) -> dict[str, str]:
    """verify-full keywords with the pinned RDS CA, or the CA of ``--sslrootcert``."""
    try:
        return verified_tls(
            auth=IAM_TOKEN if auth == AUTH_IAM else SCRAM, root_cert=args.sslrootcert
        )
    except TlsSetupError as exc:
        given = f"--sslrootcert {args.sslrootcert}: " if args.sslrootcert else ""
        raise failover.DrillError(f"{given}{exc}") from None


class DrillLogin:
    """How a drill logs in to PostgreSQL: a new DSN for every connection attempt, always over
    verified TLS (``sslmode=verify-full`` against the pinned RDS CA, or ``--sslrootcert``).

    ``iam``: the drills' own login ``govdr_drill`` (created by Custom::TxlogBootstrap, allowed
    by the managed policy ``rds-drill-connect-<suffix>``) with an IAM database authentication
    token, made afresh per attempt (a token is valid for 15 minutes, a failover drill
    reconnects every second for longer), sent as a password over the verified TLS session:
    https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.Connecting.Python.html
    ``secret``: the master secret from Secrets Manager (SCRAM), the break-glass path.
    Neither the token nor the password is ever printed: probe errors have them taken out.
    """

    def __init__(
        self,
        session: Session,
        outputs: dict[str, str],
        args: argparse.Namespace,
        host: str,
        port: int,
        auth: str,
    ) -> None:
        self.tls = _tls(args, auth)
        self.host, self.port, self.auth = host, int(port), auth
        self._issued: list[str] = []
        if auth == AUTH_IAM:
            self._rds = session.client("rds")
            self.user, self.dbname = DRILL_ROLE, DATABASE_NAME
            self._password: str | None = None
        else:
            secret = json.loads(
                session.client("secretsmanager").get_secret_value(
                    SecretId=outputs["DatabaseSecretArn"]
                )["SecretString"]
            )
            self.user = str(secret["username"])
            self.dbname = str(secret.get("dbname") or DATABASE_NAME)
            self._password = str(secret["password"])
            self._issued.append(self._password)

    def _credential(self) -> str:
        if self._password is not None:
            return self._password
        # Signed locally with the caller's credentials (no request is sent); the caller needs
        # rds-db:connect on dbuser:<DbiResourceId>/govdr_drill.
        token: str = self._rds.generate_db_auth_token(
            DBHostname=self.host, Port=self.port, DBUsername=self.user
        )
        self._issued[:] = [token]  # only the newest can be in the next error
        return token

    def dsn(self) -> str:
        import psycopg2.extensions

        dsn: str = psycopg2.extensions.make_dsn(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self._credential(),
            dbname=self.dbname,
            application_name="govdr-drill",
            **self.tls,
        )
        return dsn

    def redact(self, text: str) -> str:
        for value in self._issued:
            text = text.replace(value, REDACTED)
        return text

    def probe(self, query: str | None = None) -> Callable[[], None]:
        inner = psycopg_probe(self.dsn) if query is None else psycopg_probe(self.dsn, query)

        def probe() -> None:
            try:
                inner()
            except Exception as exc:
                message = f"{type(exc).__name__}: {str(exc).strip()}"
                raise ProbeError(self.redact(message)) from None

        return probe


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


def _drill_targets(args: argparse.Namespace, auth: str) -> tuple[Session, dict[str, str], Any, str]:
    _objective(args.objective)
    _tls(args, auth)  # no CA to verify the server with: stop before anything is done
    session = Session()
    outputs = _outputs(args, session)
    return session, outputs, session.client("rds"), outputs["DatabaseInstanceIdentifier"]


def cmd_failover(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    session, outputs, rds, instance = _drill_targets(args, args.auth)
    template = outputs.get("FailoverDrillTemplateId") if args.via_fis else None
    if args.via_fis and not template:
        raise failover.DrillError("the outputs have no FailoverDrillTemplateId: redeploy")
    if args.dry_run:
        db = failover.describe_instance(rds, instance)
        lines = failover.plan(db, template, args.objective)
        if session.local_endpoint:
            lines.append(f"note: {LOCAL_ENDPOINT_NOTE}")
        return {"drill": "failover", "dry_run": True, "plan": lines}, 0
    if session.local_endpoint:
        raise failover.DrillError(
            f"{LOCAL_ENDPOINT_NOTE}; run `govdr drill failover --dry-run` here, or the drill "
            "against a real deployment (make outputs)"
        )
    db = failover.describe_instance(rds, instance)
    _guard(args, session, outputs, db, "forces a Multi-AZ failover (reboot with failover)")
    endpoint = db["Endpoint"]
    login = DrillLogin(session, outputs, args, endpoint["Address"], endpoint["Port"], args.auth)
    probe = login.probe()
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
    session, outputs, rds, instance = _drill_targets(args, RESTORE_AUTH)
    suffix = outputs["EnvironmentSuffix"]
    target = restore.drill_instance_id(suffix)
    if args.dry_run:
        lines = restore.plan(failover.describe_instance(rds, instance), target)
        if session.local_endpoint:
            lines.append(f"note: {LOCAL_ENDPOINT_NOTE}; the restore would not be verified")
        return {"drill": "restore", "dry_run": True, "plan": lines}, 0
    _guard(
        args,
        session,
        outputs,
        failover.describe_instance(rds, instance),
        f"creates {target} from a point-in-time restore and deletes it",
    )

    def probe_for(host: str, port: int) -> Any:
        login = DrillLogin(session, outputs, args, host, port, RESTORE_AUTH)
        return login.probe(restore.CANARY)

    report = restore.run_restore(
        rds,
        instance,
        suffix,
        None if session.local_endpoint else probe_for,
        objective=args.objective,
        progress=_progress,
        **DRILL_TIMING,
    )
    if session.local_endpoint:
        report["verification"] = LOCAL_ENDPOINT_NOTE
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
            metavar="FILE",
            help="CA bundle the server certificate must chain to (sslmode=verify-full, always); "
            "default: the pinned Amazon RDS eu-central-2 roots shipped with govdr",
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
    fail.add_argument(
        "--auth",
        choices=(AUTH_IAM, AUTH_SECRET),
        default=AUTH_IAM,
        help="iam (default): log in as govdr_drill with an IAM token (attach the policy of "
        "DrillConnectPolicyArn); secret: the master secret (break glass, needs the policy of "
        "DatabaseSecretReadPolicyArn)",
    )
    fail.set_defaults(func=cmd_failover, renders="report")

    rest = kinds.add_parser(
        "restore", help="point-in-time restore into a new instance, verify, delete"
    )
    common(rest)
    rest.set_defaults(func=cmd_restore, renders="report")


def _slot_line(slot: dict[str, Any]) -> str:
    def mib(value: Any) -> str:
        return "unknown" if value is None else f"{value / 2**20:.0f} MiB"

    return (
        f"replication slot {slot.get('name')}: {slot.get('health')}; WAL kept "
        f"{mib(slot.get('retained_wal_bytes'))}, left before invalidation "
        f"{mib(slot.get('safe_wal_bytes'))} of {mib(slot.get('wal_keep_limit_bytes'))}; "
        f"invalidations in 24 h: {slot.get('invalidations_24h')}"
    )


def render(result: dict[str, Any]) -> str:
    if "plan" in result:
        return "\n".join(result["plan"])
    lines = []
    for key, value in result.items():
        if key in ("events", "breaches", "alarms_in_alarm", "last_failover_event"):
            continue
        if key == "replication_slot" and isinstance(value, dict):
            lines.append(_slot_line(value))
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
