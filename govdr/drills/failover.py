"""Failover drill: force a Multi-AZ failover and measure the recovery time (RTO).

RTO is measured from the moment the failover is requested until a new TLS connection to the
database endpoint succeeds again, after the probe has first seen it unreachable. RDS's own
failover events are read back as a cross-check (``event_rto_seconds``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from govdr.drills.probe import Clock, ProbeLog, ProbeTimeout, Sleep, attempt, wait_for

# How long the probe waits to see the old primary go away before calling the drill
# inconclusive (RDS starts a forced failover within seconds).
OUTAGE_WINDOW_SECONDS = 120.0
EVENT_WAIT_SECONDS = 90.0
# An outage counts only after this many failed connections in a row: a single timeout or
# reset on a busy network is not a failover, and with one probe per second two failures
# in a row still see a Multi-AZ failover (typically 60-120 s) within about 2 s.
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.MultiAZSingleStandby.html
OUTAGE_CONSECUTIVE_FAILURES = 2


class DrillError(RuntimeError):
    """The drill cannot start or was inconclusive; the message says why and what to do."""


def describe_instance(rds: Any, instance_id: str) -> dict[str, Any]:
    try:
        [db] = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"]
    except rds.exceptions.DBInstanceNotFoundFault:
        raise DrillError(
            f"database instance {instance_id} does not exist; check the stack outputs "
            "(DatabaseInstanceIdentifier) and the region"
        ) from None
    return dict(db)


def failover_events(rds: Any, instance_id: str, since: datetime) -> list[dict[str, Any]]:
    """RDS events of category ``failover`` for the instance since ``since``, oldest first."""
    events = rds.describe_events(
        SourceIdentifier=instance_id,
        SourceType="db-instance",
        StartTime=since,
        EventCategories=["failover"],
    )["Events"]
    return sorted(
        (
            {
                "time": e["Date"].astimezone(UTC).isoformat(),
                "message": e.get("Message", ""),
                "id": e.get("SourceArn", ""),
            }
            for e in events
            # The filter is also applied here: not every API implementation honours it.
            if "failover" in e.get("EventCategories", [])
        ),
        key=lambda e: e["time"],
    )


def event_rto_seconds(events: list[dict[str, Any]], started: datetime) -> float | None:
    """Seconds from the request to RDS's "failover completed" event, if there is one."""
    for event in events:
        if "completed" in event["message"].lower():
            return (datetime.fromisoformat(event["time"]) - started).total_seconds()
    return None


def _every(
    seconds: float, line: Callable[[float], str], progress: Callable[[str], None]
) -> Callable[[float], None]:
    """A progress callback that speaks at most once per ``seconds`` of waiting."""
    last = [-seconds]

    def tick(waited: float) -> None:
        if waited - last[0] >= seconds:
            last[0] = waited
            progress(line(waited))

    return tick


def plan(db: dict[str, Any], via_fis: str | None, objective: float) -> list[str]:
    trigger = (
        f"start FIS experiment template {via_fis} (aws:rds:reboot-db-instances, forceFailover)"
        if via_fis
        else f"reboot {db['DBInstanceIdentifier']} with ForceFailover=true"
    )
    return [
        f"would {trigger}: primary in {db.get('AvailabilityZone')}, standby in "
        f"{db.get('SecondaryAvailabilityZone')}",
        "would probe the endpoint with a new TLS connection every second: first until it is "
        "unreachable, then until it accepts connections again",
        f"would report RTO = request -> first accepted connection; objective < {objective:.0f} s",
        "would read RDS failover events as a cross-check and write the JSON report",
    ]


def run_failover(
    rds: Any,
    instance_id: str,
    probe: Callable[[], None],
    *,
    objective: float,
    fis: Any = None,
    fis_template_id: str | None = None,
    clock: Clock = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Sleep = time.sleep,
    progress: Callable[[str], None] = lambda _line: None,
    interval: float = 1.0,
) -> dict[str, Any]:
    """Run the drill; return its report (``met`` says whether RTO < objective)."""
    db = describe_instance(rds, instance_id)
    if not db.get("MultiAZ"):
        raise DrillError(f"{instance_id} is not Multi-AZ: a forced failover needs a standby")
    if db.get("DBInstanceStatus") != "available":
        raise DrillError(
            f"{instance_id} is {db.get('DBInstanceStatus')}, not available; wait and retry"
        )
    az_before = db.get("AvailabilityZone")
    # Prove the probe can connect before anything is changed: a probe that cannot connect
    # would read its own failure as the outage.
    ok, error = attempt(probe)
    if not ok:
        raise DrillError(
            f"cannot connect to {instance_id} before the failover ({error}); nothing was "
            "changed: fix the connection first (--auth iam: the policy of "
            "DrillConnectPolicyArn attached to you; the CA of --sslrootcert; security group, "
            "network path)"
        )
    started_at = now()
    start = clock()
    if fis_template_id:
        experiment = fis.start_experiment(experimentTemplateId=fis_template_id)["experiment"]
        trigger = {"via": "fis", "experiment_id": experiment["id"]}
    else:
        rds.reboot_db_instance(DBInstanceIdentifier=instance_id, ForceFailover=True)
        trigger = {"via": "rds-api"}
    progress(f"failover requested at {started_at.isoformat()} ({trigger['via']})")

    log = ProbeLog()
    report: dict[str, Any] = {
        "drill": "failover",
        "instance": instance_id,
        **trigger,
        "started_at": started_at.isoformat(),
        "ended_at": None,
        "rto_seconds": None,
        "objective_seconds": objective,
        "met": False,
        "error": None,
        "outage_seen_after_seconds": None,
        "event_rto_seconds": None,
        "events": [],
        "failover_confirmed_by": None,
        "primary_az_before": az_before,
        "primary_az_after": None,
        "probe_attempts": 0,
        "probe_failures": 0,
    }
    # From here on the failover is under way: whatever happens, a report comes back (with
    # the reason in "error") so that the caller can write it.
    try:
        _observe(
            rds,
            instance_id,
            probe,
            report,
            log,
            started_at=started_at,
            start=start,
            objective=objective,
            clock=clock,
            now=now,
            sleep=sleep,
            progress=progress,
            interval=interval,
        )
    except (Exception, KeyboardInterrupt) as exc:
        report["error"] = (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        )
        report["met"] = False
        progress(f"drill stopped after the failover request: {report['error']}")
    report["ended_at"] = report["ended_at"] or now().isoformat()
    report["probe_attempts"] = len(log.attempts)
    report["probe_failures"] = sum(1 for _, ok, _ in log.attempts if not ok)
    return report


def _observe(
    rds: Any,
    instance_id: str,
    probe: Callable[[], None],
    report: dict[str, Any],
    log: ProbeLog,
    *,
    started_at: datetime,
    start: float,
    objective: float,
    clock: Clock,
    now: Callable[[], datetime],
    sleep: Sleep,
    progress: Callable[[str], None],
    interval: float,
) -> None:
    """Watch the failover and fill ``report`` in as the figures arrive."""
    try:
        down = wait_for(
            probe,
            accepting=False,
            start=start,
            timeout=OUTAGE_WINDOW_SECONDS,
            interval=interval,
            clock=clock,
            sleep=sleep,
            log=log,
            consecutive=OUTAGE_CONSECUTIVE_FAILURES,
        )
    except ProbeTimeout:
        down = None
        report["error"] = (
            f"the probe never saw the database unreachable ({OUTAGE_CONSECUTIVE_FAILURES} "
            f"failed connections in a row) within {OUTAGE_WINDOW_SECONDS:.0f} s of the "
            "request, so no recovery time can be measured; check the RDS events"
        )
        progress(report["error"])
    rto: float | None = None
    if down is not None:
        report["outage_seen_after_seconds"] = round(down - start, 3)
        progress(f"endpoint unreachable after {down - start:.1f} s; waiting for it to accept again")
        try:
            up = wait_for(
                probe,
                accepting=True,
                start=start,
                timeout=objective * 2,
                interval=interval,
                clock=clock,
                sleep=sleep,
                log=log,
                on_wait=_every(
                    10.0,
                    lambda waited: f"  still waiting: {waited:.0f} s since the request",
                    progress,
                ),
            )
            rto = round(up - start, 3)
            report["rto_seconds"] = rto
            progress(f"accepting connections again after {rto:.1f} s")
        except ProbeTimeout:
            report["error"] = f"not accepting connections {objective * 2:.0f} s after the request"
            progress(report["error"])
    report["ended_at"] = now().isoformat()

    events: list[dict[str, Any]] = []
    event_rto = None
    deadline = clock() + EVENT_WAIT_SECONDS
    while True:
        events = failover_events(rds, instance_id, started_at - timedelta(seconds=5))
        event_rto = event_rto_seconds(events, started_at)
        if event_rto is not None or clock() >= deadline:
            break
        sleep(5)
    report["events"] = events
    report["event_rto_seconds"] = None if event_rto is None else round(event_rto, 3)
    after = describe_instance(rds, instance_id)
    report["primary_az_after"] = after.get("AvailabilityZone")
    # A recovered connection proves nothing by itself (a plain restart also recovers): the
    # primary must have moved to the standby's AZ, or RDS must report the failover complete.
    if report["primary_az_after"] != report["primary_az_before"]:
        report["failover_confirmed_by"] = "availability zone changed"
    elif event_rto is not None:
        report["failover_confirmed_by"] = "RDS failover completed event"
    elif report["error"] is None:
        report["error"] = (
            "no failover happened: the primary stayed in "
            f"{report['primary_az_before']} and RDS reported no completed failover"
        )
    report["met"] = (
        rto is not None and rto < objective and report["failover_confirmed_by"] is not None
    )
