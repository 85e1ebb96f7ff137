"""Measurement logic of the drills and of `govdr status`, on a simulated clock.

AWS answers come from botocore Stubbers (requests and responses are validated against the
real service models); the connection probe is simulated here and real in
tests/runtime/test_probe.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from govdr.cli.main import main
from govdr.drills import commands, failover, restore, status
from govdr.drills.probe import ProbeLog, ProbeTimeout, wait_for

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
DB = "rds-qa7"


class SimTime:
    """Monotonic clock, wall clock and sleep that advance together, without waiting."""

    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t)

    def timing(self) -> dict[str, Any]:
        return {"clock": self.clock, "sleep": self.sleep, "now": self.now}


def outage(sim: SimTime, down_from: float, up_at: float) -> Callable[[], None]:
    """A probe that takes 0.2 s per attempt and fails while down_from <= t < up_at."""

    def probe() -> None:
        sim.t += 0.2
        if down_from <= sim.t < up_at:
            raise OSError("connection refused")

    return probe


def client(service: str) -> Any:
    return boto3.client(
        service,
        region_name="eu-central-2",
        aws_access_key_id="stub",
        aws_secret_access_key="stub",
    )


@pytest.fixture
def rds() -> Iterator[tuple[Any, Stubber]]:
    c = client("rds")
    with Stubber(c) as stubber:
        yield c, stubber
        stubber.assert_no_pending_responses()


def instance(**overrides: Any) -> dict[str, Any]:
    db = {
        "DBInstanceIdentifier": DB,
        "DBInstanceStatus": "available",
        "MultiAZ": True,
        "AvailabilityZone": "eu-central-2a",
        "SecondaryAvailabilityZone": "eu-central-2b",
        "LatestRestorableTime": T0 - timedelta(seconds=120),
        "Endpoint": {"Address": "rds-qa7.example.internal", "Port": 5432},
        "DBSubnetGroup": {"DBSubnetGroupName": "rds-subnets-qa7"},
        "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-1", "Status": "active"}],
        "DBParameterGroups": [{"DBParameterGroupName": "rds-params-qa7"}],
        "StorageEncrypted": True,
    }
    db.update(overrides)
    db.setdefault(
        "DBInstanceArn", f"arn:aws:rds:eu-central-2:123456789012:db:{db['DBInstanceIdentifier']}"
    )
    return db


def describe(stubber: Stubber, identifier: str = DB, **overrides: Any) -> None:
    stubber.add_response(
        "describe_db_instances",
        {"DBInstances": [instance(DBInstanceIdentifier=identifier, **overrides)]},
        {"DBInstanceIdentifier": identifier},
    )


def events(stubber: Stubber, *items: tuple[float, str, list[str]]) -> None:
    stubber.add_response(
        "describe_events",
        {
            "Events": [
                {"Date": T0 + timedelta(seconds=t), "Message": m, "EventCategories": cats}
                for t, m, cats in items
            ]
        },
        {
            "SourceIdentifier": DB,
            "SourceType": "db-instance",
            "StartTime": ANY,
            "EventCategories": ["failover"],
        },
    )


FAILOVER_EVENTS = (
    (2.0, "Multi-AZ instance failover started.", ["failover"]),
    (9.0, "DB instance restarted", ["availability"]),  # another category: ignored
    (27.5, "Multi-AZ instance failover completed", ["failover"]),
)


# --- the probe loop ---------------------------------------------------------------------------


# The drill polls RDS events every 5 s for up to 90 s after the request.
EVENT_POLLS = 19


def stub_reboot(
    stubber: Stubber, *event_items: tuple[float, str, list[str]], polls: int = 1
) -> None:
    """A failover drill's RDS calls: the instance, the reboot, the event polls (each answering
    ``event_items``), the instance after."""
    describe(stubber)
    stubber.add_response("reboot_db_instance", {"DBInstance": instance()}, None)
    for _ in range(polls):
        events(stubber, *event_items)
    describe(stubber)


def test_probe_loop_returns_the_first_attempt_in_the_awaited_state() -> None:
    sim = SimTime()
    probe = outage(sim, 3.0, 10.0)
    log = ProbeLog()
    down = wait_for(
        probe, accepting=False, start=0, timeout=60, clock=sim.clock, sleep=sim.sleep, log=log
    )
    up = wait_for(
        probe, accepting=True, start=0, timeout=60, clock=sim.clock, sleep=sim.sleep, log=log
    )
    # Seen when the attempt ends: at most one interval plus one attempt after the change.
    assert 3.0 <= down <= 3.0 + 1.2
    assert 10.0 <= up <= 10.0 + 1.2
    first_failure = next(t for t, ok, _ in log.attempts if not ok)
    assert first_failure <= down
    assert [ok for _, ok, _ in log.attempts].count(False) == 6


def test_probe_loop_times_out_with_the_last_error() -> None:
    sim = SimTime()
    with pytest.raises(ProbeTimeout, match=r"not accepting connections within 20 s.*refused"):
        wait_for(
            outage(sim, 0.0, 1e9),
            accepting=True,
            start=0,
            timeout=20,
            clock=sim.clock,
            sleep=sim.sleep,
        )
    assert 20.0 <= sim.t <= 21.5


# --- failover drill ---------------------------------------------------------------------------


@pytest.mark.control("CP-10")
def test_failover_rto_is_request_to_first_accepted_connection(
    rds: tuple[Any, Stubber],
) -> None:
    c, stubber = rds
    sim = SimTime()
    describe(stubber)
    stubber.add_response(
        "reboot_db_instance",
        {"DBInstance": instance(DBInstanceStatus="rebooting")},
        {"DBInstanceIdentifier": DB, "ForceFailover": True},
    )
    events(stubber, *FAILOVER_EVENTS)
    describe(stubber, AvailabilityZone="eu-central-2b", SecondaryAvailabilityZone="eu-central-2a")
    report = failover.run_failover(c, DB, outage(sim, 4.0, 31.0), objective=900, **sim.timing())
    # The request goes out after the 0.2 s connection check, at t = 0.2.
    assert 31.0 - 0.2 <= report["rto_seconds"] <= 31.0 - 0.2 + 1.2
    assert report["met"] is True
    assert report["failover_confirmed_by"] == "availability zone changed"
    assert report["event_rto_seconds"] == 27.3
    assert [e["message"] for e in report["events"]] == [
        "Multi-AZ instance failover started.",
        "Multi-AZ instance failover completed",
    ]
    assert report["primary_az_before"] == "eu-central-2a"
    assert report["primary_az_after"] == "eu-central-2b"
    assert report["probe_failures"] >= 20
    assert report["started_at"] == (T0 + timedelta(seconds=0.2)).isoformat()


def test_failover_slower_than_the_objective_is_a_breach(rds: tuple[Any, Stubber]) -> None:
    c, stubber = rds
    sim = SimTime()
    stub_reboot(stubber, *FAILOVER_EVENTS)
    lines: list[str] = []
    report = failover.run_failover(
        c, DB, outage(sim, 1.0, 45.0), objective=40, progress=lines.append, **sim.timing()
    )
    assert report["rto_seconds"] >= 40
    assert report["met"] is False
    # Progress on the long wait: about once per 10 s, not once per probe.
    waiting = [line for line in lines if "still waiting" in line]
    assert 3 <= len(waiting) <= 5


def test_failover_that_never_recovers_has_no_rto(rds: tuple[Any, Stubber]) -> None:
    c, stubber = rds
    sim = SimTime()
    stub_reboot(stubber, polls=EVENT_POLLS)
    report = failover.run_failover(c, DB, outage(sim, 1.0, 1e9), objective=30, **sim.timing())
    assert report["rto_seconds"] is None
    assert report["met"] is False
    assert report["event_rto_seconds"] is None


def test_item_10_an_unseen_outage_after_the_request_still_returns_the_report(
    rds: tuple[Any, Stubber],
) -> None:
    """Finding: when the probe never saw the database go away after the reboot, the drill
    raised and no report was written; now the report comes back with the reason."""
    c, stubber = rds
    sim = SimTime()
    stub_reboot(stubber, polls=EVENT_POLLS)
    report = failover.run_failover(c, DB, outage(sim, 1e9, 1e9), objective=900, **sim.timing())
    assert report["met"] is False
    assert report["rto_seconds"] is None
    assert report["error"].startswith(
        "the probe never saw the database unreachable (2 failed connections in a row) "
        "within 120 s of the request"
    )
    assert report["ended_at"] is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"MultiAZ": False}, "is not Multi-AZ"),
        ({"DBInstanceStatus": "modifying"}, "is modifying, not available"),
    ],
)
def test_failover_refuses_an_unsuitable_instance(
    rds: tuple[Any, Stubber], overrides: dict[str, Any], message: str
) -> None:
    c, stubber = rds
    describe(stubber, **overrides)
    with pytest.raises(failover.DrillError, match=message):
        failover.run_failover(c, DB, lambda: None, objective=900)


def test_event_rto_needs_a_completed_event() -> None:
    started = T0
    assert failover.event_rto_seconds([], started) is None
    done = [{"time": (T0 + timedelta(seconds=42)).isoformat(), "message": "failover completed"}]
    assert failover.event_rto_seconds(done, started) == 42.0


# --- restore drill ----------------------------------------------------------------------------


def _restore_calls(stubber: Stubber, target: str) -> None:
    describe(stubber)
    stubber.add_client_error(
        "describe_db_instances", service_error_code="DBInstanceNotFound", http_status_code=404
    )
    stubber.add_response(
        "restore_db_instance_to_point_in_time",
        {"DBInstance": instance(DBInstanceIdentifier=target, DBInstanceStatus="creating")},
        {
            "SourceDBInstanceIdentifier": DB,
            "TargetDBInstanceIdentifier": target,
            "UseLatestRestorableTime": True,
            "DBSubnetGroupName": "rds-subnets-qa7",
            "VpcSecurityGroupIds": ["sg-1"],
            "DBParameterGroupName": "rds-params-qa7",
            "MultiAZ": False,
            "PubliclyAccessible": False,
            "DeletionProtection": False,
            "CopyTagsToSnapshot": True,
            "Tags": [{"Key": "govdr:drill", "Value": "restore"}],
        },
    )
    describe(stubber, target, DBInstanceStatus="creating")
    describe(stubber, target, DBInstanceStatus="creating")
    describe(stubber, target, DBInstanceStatus="available")
    describe(stubber, target)


def _tags(stubber: Stubber, target: str, tags: list[dict[str, str]]) -> None:
    describe(stubber, target)
    stubber.add_response(
        "list_tags_for_resource",
        {"TagList": tags},
        {"ResourceName": f"arn:aws:rds:eu-central-2:123456789012:db:{target}"},
    )


def _delete(stubber: Stubber, target: str) -> None:
    _tags(stubber, target, [{"Key": "govdr:drill", "Value": "restore"}])
    stubber.add_response(
        "delete_db_instance",
        {"DBInstance": instance(DBInstanceIdentifier=target, DBInstanceStatus="deleting")},
        {"DBInstanceIdentifier": target, "SkipFinalSnapshot": True, "DeleteAutomatedBackups": True},
    )


def test_restore_is_timed_verified_and_deleted(rds: tuple[Any, Stubber]) -> None:
    c, stubber = rds
    sim = SimTime()
    target = restore.drill_instance_id("qa7")
    _restore_calls(stubber, target)
    _delete(stubber, target)
    probed: list[tuple[str, int]] = []

    def probe_for(host: str, port: int) -> Callable[[], None]:
        probed.append((host, port))
        return lambda: None

    report = restore.run_restore(c, DB, "qa7", probe_for, objective=900, **sim.timing())
    assert report["restored_instance"] == "rds-qa7-restore-drill"
    assert report["restore_seconds"] == 2 * restore.POLL_SECONDS
    assert report["verified"] is True
    assert report["met"] is True
    assert report["restore_point"] == (T0 - timedelta(seconds=120)).isoformat()
    assert probed == [("rds-qa7.example.internal", 5432)]


def test_restore_that_does_not_answer_fails_and_is_still_deleted(
    rds: tuple[Any, Stubber],
) -> None:
    c, stubber = rds
    sim = SimTime()
    target = restore.drill_instance_id("qa7")
    _restore_calls(stubber, target)
    _delete(stubber, target)

    def refused() -> None:
        sim.t += 1
        raise OSError("connection refused")

    report = restore.run_restore(
        c, DB, "qa7", lambda host, port: refused, objective=900, **sim.timing()
    )
    assert report["verified"] is False
    assert report["met"] is False
    assert "refused" in report["verification"]


def test_restore_refuses_to_reuse_a_leftover_drill_instance(rds: tuple[Any, Stubber]) -> None:
    c, stubber = rds
    describe(stubber)
    describe(stubber, restore.drill_instance_id("qa7"))
    with pytest.raises(failover.DrillError, match="exists from an earlier drill; delete it"):
        restore.run_restore(c, DB, "qa7", None, objective=900)


# --- status -----------------------------------------------------------------------------------


def _status_clients(
    db: dict[str, Any],
    secret: dict[str, Any],
    lag: float | None,
    replication: dict[str, Any] | None = None,
    slot: tuple[float | None, float | None, float] | None = None,
) -> Iterator[Callable[[str], Any]]:
    clients = {name: client(name) for name in ("rds", "secretsmanager", "cloudwatch")}
    stubs = {name: Stubber(c) for name, c in clients.items()}
    stubs["rds"].add_response(
        "describe_db_instances", {"DBInstances": [db]}, {"DBInstanceIdentifier": DB}
    )
    stubs["rds"].add_response("describe_events", {"Events": []}, None)
    stubs["secretsmanager"].add_response("describe_secret", secret, {"SecretId": "arn:secret"})
    if replication is not None:
        stubs["secretsmanager"].add_response(
            "describe_secret", replication, {"SecretId": "arn:replication"}
        )
    stubs["cloudwatch"].add_response(
        "describe_alarms",
        {
            "MetricAlarms": [
                {"AlarmName": "rds-cpu-qa7", "StateValue": "ALARM"},
                {"AlarmName": "rds-cpu-other", "StateValue": "ALARM"},
            ]
        },
        {"StateValue": "ALARM"},
    )
    points = [] if lag is None else [{"Timestamp": T0, "Maximum": lag}]
    stubs["cloudwatch"].add_response("get_metric_statistics", {"Datapoints": points}, None)
    if slot is not None:  # (safe WAL bytes, retained WAL bytes, invalidations in 24 h)
        safe, retained, invalidations = slot
        for metric, statistic, value in (
            ("SlotSafeWalBytes", "Minimum", safe),
            ("SlotRetainedWalBytes", "Maximum", retained),
            ("SlotInvalidations", "Sum", invalidations or None),
        ):
            found = [] if value is None else [{"Timestamp": T0, statistic: value}]
            stubs["cloudwatch"].add_response(
                "get_metric_statistics",
                {"Datapoints": found},
                {
                    "Namespace": "govdr/txlog",
                    "MetricName": metric,
                    "Dimensions": [
                        {"Name": "service", "Value": "txlog-archiver"},
                        {"Name": "Environment", "Value": "qa7"},
                    ],
                    "StartTime": T0
                    - (timedelta(hours=24) if statistic == "Sum" else timedelta(minutes=15)),
                    "EndTime": T0,
                    "Period": 3600 if statistic == "Sum" else 60,
                    "Statistics": [statistic],
                },
            )
    for stub in stubs.values():
        stub.activate()
    yield clients.__getitem__
    for stub in stubs.values():
        stub.assert_no_pending_responses()


OUTPUTS = {
    "EnvironmentSuffix": "qa7",
    "DatabaseInstanceIdentifier": DB,
    "DatabaseSecretArn": "arn:secret",
    "AlarmTopicArn": "arn:topic",
}


def test_status_reports_rpo_and_posture_within_objectives() -> None:
    secret = {
        "RotationEnabled": True,
        "LastRotatedDate": T0 - timedelta(days=3),
        "NextRotationDate": T0 + timedelta(days=27),
    }
    for clients in _status_clients(instance(), secret, lag=4.0):
        doc = status.gather(clients, OUTPUTS, now=lambda: T0)
    assert doc["rpo_seconds"] == 120.0
    assert doc["multi_az"] is True
    assert (doc["primary_az"], doc["standby_az"]) == ("eu-central-2a", "eu-central-2b")
    assert doc["archive_lag_seconds"] == 4.0
    assert doc["alarms_in_alarm"] == ["rds-cpu-qa7"]
    assert doc["secret_next_rotation"] == (T0 + timedelta(days=27)).isoformat()
    assert doc["breaches"] == []


def test_status_names_every_breached_objective() -> None:
    db = instance(MultiAZ=False, LatestRestorableTime=T0 - timedelta(seconds=4000))
    secret = {"RotationEnabled": False, "NextRotationDate": T0 - timedelta(days=1)}
    for clients in _status_clients(db, secret, lag=3700.0):
        doc = status.gather(clients, OUTPUTS, now=lambda: T0)
    assert doc["breaches"] == [
        "RPO 4000 s >= objective 3600 s",
        "not Multi-AZ: an AZ loss means a restore, not a failover (RTO)",
        f"secret rotation overdue since {(T0 - timedelta(days=1)).isoformat()}",
        "transaction-log archive 3700 s behind (>= the RPO objective)",
        "secret rotation is disabled",
    ]


def test_status_checks_the_archiver_secret_when_the_stack_has_one() -> None:
    secret = {"RotationEnabled": True, "NextRotationDate": T0 + timedelta(days=5)}
    overdue = {"RotationEnabled": True, "NextRotationDate": T0 - timedelta(hours=2)}
    outputs = {**OUTPUTS, "ReplicationSecretArn": "arn:replication"}
    for clients in _status_clients(instance(), secret, lag=1.0, replication=overdue):
        doc = status.gather(clients, outputs, now=lambda: T0)
    assert doc["archiver_secret_next_rotation"] == (T0 - timedelta(hours=2)).isoformat()
    assert doc["breaches"] == [
        f"archiver secret rotation overdue since {(T0 - timedelta(hours=2)).isoformat()}"
    ]
    disabled = {"RotationEnabled": False}
    for clients in _status_clients(instance(), secret, lag=1.0, replication=disabled):
        doc = status.gather(clients, outputs, now=lambda: T0)
    assert doc["breaches"] == ["archiver secret rotation is disabled"]


MIB = 1024 * 1024
SLOT_OUTPUTS = {**OUTPUTS, "TxlogSlotName": "govdr_txlog_qa7", "TxlogSlotWalKeepMiB": "20480"}
ON_TIME = {"RotationEnabled": True, "NextRotationDate": T0 + timedelta(days=5)}


def test_status_shows_the_slot_against_its_wal_cap() -> None:
    for clients in _status_clients(
        instance(), ON_TIME, lag=1.0, slot=(20000.0 * MIB, 480.0 * MIB, 0)
    ):
        doc = status.gather(clients, SLOT_OUTPUTS, now=lambda: T0)
    assert doc["replication_slot"] == {
        "name": "govdr_txlog_qa7",
        "health": "ok",
        "wal_keep_limit_bytes": 20480 * MIB,
        "retained_wal_bytes": 480.0 * MIB,
        "safe_wal_bytes": 20000.0 * MIB,
        "invalidations_24h": 0,
    }
    assert doc["breaches"] == []
    line = commands.render(doc).splitlines()
    assert (
        "replication slot govdr_txlog_qa7: ok; WAL kept 480 MiB, left before invalidation "
        "20000 MiB of 20480 MiB; invalidations in 24 h: 0"
    ) in line


@pytest.mark.parametrize(
    ("slot", "health", "breach"),
    [
        ((10239.0 * MIB, 10241.0 * MIB, 0), "near the cap", "10239 MiB of WAL left before"),
        ((20000.0 * MIB, 1.0, 2), "invalidated", "invalidated 2 time(s) in the last 24 h"),
        ((None, None, 0), "unknown", None),
    ],
)
def test_status_names_a_slot_near_its_cap_or_invalidated(
    slot: tuple[float | None, float | None, float], health: str, breach: str | None
) -> None:
    for clients in _status_clients(instance(), ON_TIME, lag=1.0, slot=slot):
        doc = status.gather(clients, SLOT_OUTPUTS, now=lambda: T0)
    assert doc["replication_slot"]["health"] == health
    if breach is None:
        assert doc["breaches"] == []
    else:
        [found] = doc["breaches"]
        assert breach in found


@pytest.mark.parametrize("cap", ["", "0", "-5", "20 GiB", "1e4"])
def test_status_refuses_a_slot_cap_output_that_is_not_a_size(cap: str) -> None:
    outputs = {**SLOT_OUTPUTS, "TxlogSlotWalKeepMiB": cap}
    if not cap:  # an empty output is an older stack's: no slot line, no error
        for clients in _status_clients(instance(), ON_TIME, lag=1.0):
            assert status.gather(clients, outputs, now=lambda: T0)["replication_slot"] is None
        return
    with pytest.raises(status.OutputsError, match=r"TxlogSlotWalKeepMiB is .*make outputs"):
        for clients in _status_clients(instance(), ON_TIME, lag=1.0):
            status.gather(clients, outputs, now=lambda: T0)


def test_status_without_a_restorable_time_is_a_breach() -> None:
    secret = {"RotationEnabled": True}
    db = instance()
    del db["LatestRestorableTime"]
    for clients in _status_clients(db, secret, lag=None):
        doc = status.gather(clients, OUTPUTS, now=lambda: T0)
    assert doc["rpo_seconds"] is None
    assert doc["breaches"] == ["RPO unknown: the instance reports no latest restorable time"]


def test_outputs_file_problems_are_explained(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(status.OutputsError, match="run `make outputs`"):
        status.load_outputs(missing, None, lambda service: None)
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    with pytest.raises(status.OutputsError, match="not a flat JSON object"):
        status.load_outputs(broken, None, lambda service: None)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"EnvironmentSuffix": "qa7"}))
    with pytest.raises(status.OutputsError, match="lack DatabaseInstanceIdentifier"):
        status.load_outputs(old, None, lambda service: None)


# --- exit codes of the CLI --------------------------------------------------------------------


class FakeSession:
    def __init__(self, clients: dict[str, Any], local_endpoint: bool = False) -> None:
        self.clients = clients
        self.local_endpoint = local_endpoint

    def client(self, service: str) -> Any:
        return self.clients[service]


@pytest.fixture
def outputs_file(tmp_path: Path) -> Path:
    path = tmp_path / "flat-outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    return path


def _cli_failover(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    tmp_path: Path,
    up_at: float,
    objective: str,
    publish_denied: bool = False,
) -> tuple[int, Path]:
    c, stubber = rds
    sim = SimTime()
    describe(stubber)  # the CLI reads the endpoint
    stub_reboot(stubber, *FAILOVER_EVENTS)
    cloudwatch = client("cloudwatch")
    cw_stub = Stubber(cloudwatch)
    cw_stub.add_response("describe_alarms", {"MetricAlarms": []}, {"StateValue": "ALARM"})
    if publish_denied:
        cw_stub.add_client_error("put_metric_data", "AccessDenied", http_status_code=403)
    else:
        cw_stub.add_response("put_metric_data", {}, None)
    cw_stub.activate()
    monkeypatch.setattr(
        commands, "Session", lambda: FakeSession({"rds": c, "cloudwatch": cloudwatch})
    )
    monkeypatch.setattr(commands, "psycopg_probe", lambda dsn, *query: outage(sim, 2.0, up_at))
    monkeypatch.setattr(commands, "DRILL_TIMING", sim.timing())
    reports = tmp_path / "reports"
    code = main(
        [
            "drill",
            "failover",
            "--outputs",
            str(outputs_file),
            "--reports-dir",
            str(reports),
            "--objective",
            objective,
            "--confirm",
            DB,
            "--json",
        ]
    )
    cw_stub.assert_no_pending_responses()
    return code, reports


def test_cli_failover_within_objective_exits_0_and_writes_the_report(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, reports = _cli_failover(monkeypatch, rds, outputs_file, tmp_path, 25.0, "900")
    assert code == 0
    [report_file] = reports.glob("failover-qa7-*.json")
    report = json.loads(report_file.read_text())
    assert report["met"] is True and 25 <= report["rto_seconds"] <= 26.2
    assert json.loads(capsys.readouterr().out)["report_file"] == str(report_file)


def test_cli_failover_breach_exits_1(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    tmp_path: Path,
) -> None:
    code, reports = _cli_failover(monkeypatch, rds, outputs_file, tmp_path, 25.0, "20")
    assert code == 1
    [report_file] = reports.glob("failover-qa7-*.json")
    assert json.loads(report_file.read_text())["met"] is False


def test_cli_failover_on_the_emulator_refuses_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c, _ = rds
    monkeypatch.setattr(commands, "Session", lambda: FakeSession({"rds": c}, local_endpoint=True))
    assert main(["drill", "failover", "--outputs", str(outputs_file)]) == 2
    err = capsys.readouterr().err
    assert "cannot fail over" in err and "--dry-run" in err
    assert "Traceback" not in err


def test_cli_status_breach_exits_1(
    monkeypatch: pytest.MonkeyPatch, outputs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = instance(LatestRestorableTime=datetime.now(UTC) - timedelta(hours=2))
    secret = {"RotationEnabled": True}
    for clients in _status_clients(db, secret, lag=None):
        fake = FakeSession({n: clients(n) for n in ("rds", "secretsmanager", "cloudwatch")})
        monkeypatch.setattr(commands, "Session", lambda fake=fake: fake)
        code = main(["status", "--outputs", str(outputs_file)])
    out = capsys.readouterr().out
    assert code == 1
    assert "objectives: BREACHED: RPO" in out


def test_cli_failover_keeps_the_report_when_the_metric_cannot_be_published(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, reports = _cli_failover(
        monkeypatch, rds, outputs_file, tmp_path, 25.0, "900", publish_denied=True
    )
    assert code == 0
    assert len(list(reports.glob("failover-qa7-*.json"))) == 1
    assert "the figure was not published to govdr/dr" in capsys.readouterr().err


# --- issue 18: targets, confirmation, alarms ---------------------------------------------------


def _stack_client(outputs: dict[str, str], stack: str) -> tuple[Any, Stubber]:
    cloudformation = client("cloudformation")
    stub = Stubber(cloudformation)
    stub.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": stack,
                    "CreationTime": T0,
                    "StackStatus": "UPDATE_COMPLETE",
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
                }
            ]
        },
        {"StackName": stack},
    )
    stub.activate()
    return cloudformation, stub


def test_item_6_an_explicit_stack_wins_over_the_outputs_file(outputs_file: Path) -> None:
    """Finding: with cfn-outputs/flat-outputs.json present, --stack was ignored and the file's
    targets were used; now the named stack's own outputs are read."""
    from_stack = {**OUTPUTS, "AlarmTopicArn": "arn:topic-from-the-stack"}
    cloudformation, stub = _stack_client(from_stack, "TapStackqa7")
    outputs = status.load_outputs(outputs_file, "TapStackqa7", lambda _service: cloudformation)
    stub.assert_no_pending_responses()
    assert outputs["AlarmTopicArn"] == "arn:topic-from-the-stack"


def test_item_6_a_stack_that_differs_from_the_outputs_file_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Finding: `govdr drill failover --stack TapStackpr1234` in a directory holding
    production's outputs rebooted production; now it refuses in one line, touching nothing."""
    prod = tmp_path / "flat-outputs.json"
    prod.write_text(json.dumps({**OUTPUTS, "EnvironmentSuffix": "prod"}))
    c, _ = rds  # no responses queued: any RDS call would fail the test
    monkeypatch.setattr(commands, "Session", lambda: FakeSession({"rds": c}))
    argv = ["drill", "failover", "--outputs", str(prod), "--stack", "TapStackpr1234"]
    assert main([*argv, "--confirm", DB]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"govdr: --stack TapStackpr1234 does not match {prod} (EnvironmentSuffix prod, stack "
        "TapStackprod); pass the stack the file describes, or --outputs with the file of "
        f"TapStackpr1234 (or remove {prod})\n"
    )


def test_item_6_a_stack_whose_outputs_name_another_environment_is_refused(
    tmp_path: Path,
) -> None:
    """Finding: nothing tied the outputs read to the stack asked for; a stack reporting
    another EnvironmentSuffix is now refused."""
    cloudformation, _ = _stack_client({**OUTPUTS, "EnvironmentSuffix": "prod"}, "TapStackqa7")
    with pytest.raises(status.OutputsError) as caught:
        status.load_outputs(tmp_path / "none.json", "TapStackqa7", lambda _s: cloudformation)
    assert str(caught.value) == (
        "stack TapStackqa7 reports EnvironmentSuffix prod (stack TapStackprod); "
        "pass --stack TapStackprod"
    )


def _alarm_stub(names: list[str]) -> tuple[Any, Stubber]:
    cloudwatch = client("cloudwatch")
    stub = Stubber(cloudwatch)
    stub.add_response(
        "describe_alarms",
        {"MetricAlarms": [{"AlarmName": n, "StateValue": "ALARM"} for n in names]},
        {"StateValue": "ALARM"},
    )
    stub.activate()
    return cloudwatch, stub


@pytest.mark.parametrize("drill", ["failover", "restore"])
@pytest.mark.parametrize("confirm", [None, "rds-qa", "rds-qa7 ", "RDS-QA7"])
def test_item_6_destructive_drills_name_the_target_and_need_the_exact_confirm(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    capsys: pytest.CaptureFixture[str],
    drill: str,
    confirm: str | None,
) -> None:
    """Finding: the destructive drills ran without any confirmation; now they print the
    target and refuse unless --confirm names the instance exactly."""
    c, stubber = rds
    describe(stubber)  # read for the target line; nothing is changed
    monkeypatch.setattr(commands, "Session", lambda: FakeSession({"rds": c}))
    argv = ["drill", drill, "--outputs", str(outputs_file)]
    if confirm is not None:
        argv += ["--confirm", confirm]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "target: stack TapStackqa7, instance rds-qa7, primary AZ eu-central-2a" in err
    given = "no --confirm" if confirm is None else f"--confirm {confirm}"
    assert f"govdr: {given} does not name the target instance rds-qa7;" in err
    assert "pass --confirm rds-qa7 (or --dry-run" in err


def test_item_6_dry_run_needs_no_confirm(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The plan touches nothing, so it needs no --confirm (the twin of the refusal above)."""
    c, stubber = rds
    describe(stubber)
    monkeypatch.setattr(commands, "Session", lambda: FakeSession({"rds": c}))
    assert main(["drill", "failover", "--outputs", str(outputs_file), "--dry-run"]) == 0
    assert "would reboot rds-qa7 with ForceFailover=true" in capsys.readouterr().out


@pytest.mark.parametrize("drill", ["failover", "restore"])
def test_item_6_drills_refuse_while_a_platform_alarm_is_in_alarm(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    capsys: pytest.CaptureFixture[str],
    drill: str,
) -> None:
    """Finding: the API path of the failover drill ignored the RPO alarm (only the FIS
    template stops on it); now both drills refuse while any platform alarm is in ALARM."""
    c, stubber = rds
    describe(stubber)
    cloudwatch, cw_stub = _alarm_stub(["rpo-qa7", "rds-cpu-other"])
    monkeypatch.setattr(
        commands, "Session", lambda: FakeSession({"rds": c, "cloudwatch": cloudwatch})
    )
    argv = ["drill", drill, "--outputs", str(outputs_file), "--confirm", DB]
    assert main(argv) == 2
    cw_stub.assert_no_pending_responses()  # and no reboot / restore was stubbed, or called
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "govdr: platform alarm(s) in ALARM: rpo-qa7; a drill now could turn an incident into "
        "an outage or data loss: resolve them first (govdr status), then retry"
    )


# --- issue 18: the failover drill's evidence -----------------------------------------------------


def test_item_10_the_drill_connects_before_it_requests_the_failover(
    rds: tuple[Any, Stubber],
) -> None:
    """Finding: the failover was requested before the probe had ever connected, so a probe
    that could not connect read its own failure as the outage."""
    c, stubber = rds
    describe(stubber)  # and no reboot_db_instance: the Stubber fails on an unexpected call

    def refused() -> None:
        raise OSError("certificate verify failed")

    with pytest.raises(failover.DrillError) as caught:
        failover.run_failover(c, DB, refused, objective=900)
    assert str(caught.value) == (
        "cannot connect to rds-qa7 before the failover (OSError: certificate verify failed); "
        "nothing was changed: fix the connection first (--auth iam: the policy of "
        "DrillConnectPolicyArn attached to you; the CA of --sslrootcert; security group, "
        "network path)"
    )


def test_item_10_one_probe_failure_is_not_an_outage(rds: tuple[Any, Stubber]) -> None:
    """Finding: one failed probe with no failover gave rto_seconds 0.0 and met true; an
    outage now needs OUTAGE_CONSECUTIVE_FAILURES failures in a row."""
    c, stubber = rds
    sim = SimTime()
    stub_reboot(stubber, polls=EVENT_POLLS)
    # One refused connection at t = 0.4 (the probe takes 0.2 s per attempt), none after.
    report = failover.run_failover(c, DB, outage(sim, 0.3, 0.5), objective=900, **sim.timing())
    assert failover.OUTAGE_CONSECUTIVE_FAILURES == 2
    assert report["probe_failures"] == 1
    assert report["rto_seconds"] is None
    assert report["met"] is False
    assert "never saw the database unreachable" in report["error"]


def test_item_10_a_recovery_without_a_failover_does_not_pass(rds: tuple[Any, Stubber]) -> None:
    """Finding: any outage and recovery passed; now the AZ must change or RDS must report the
    failover completed (a plain restart in the same AZ is not a failover)."""
    c, stubber = rds
    sim = SimTime()
    # A restart event only, and the instance still in eu-central-2a afterwards.
    stub_reboot(stubber, (9.0, "DB instance restarted", ["availability"]), polls=EVENT_POLLS)
    report = failover.run_failover(c, DB, outage(sim, 2.0, 20.0), objective=900, **sim.timing())
    assert report["rto_seconds"] is not None and report["rto_seconds"] < 900
    assert report["failover_confirmed_by"] is None
    assert report["met"] is False
    assert report["error"] == (
        "no failover happened: the primary stayed in eu-central-2a and RDS reported no "
        "completed failover"
    )


def test_item_10_a_completed_failover_event_confirms_it_when_the_az_looks_unchanged(
    rds: tuple[Any, Stubber],
) -> None:
    """The twin of the test above: RDS's completed event alone confirms the failover."""
    c, stubber = rds
    sim = SimTime()
    stub_reboot(stubber, *FAILOVER_EVENTS)
    report = failover.run_failover(c, DB, outage(sim, 2.0, 20.0), objective=900, **sim.timing())
    assert report["failover_confirmed_by"] == "RDS failover completed event"
    assert report["met"] is True and report["error"] is None


def test_item_10_an_error_after_the_request_still_writes_the_report(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Finding: an error after the reboot (here RDS refusing DescribeEvents) ended the drill
    without a report; now the report is written with the reason and the drill exits 1."""
    c, stubber = rds
    sim = SimTime()
    describe(stubber)
    describe(stubber)
    stubber.add_response("reboot_db_instance", {"DBInstance": instance()}, None)
    stubber.add_client_error("describe_events", "Throttling", "Rate exceeded", 400)
    cloudwatch = client("cloudwatch")
    cw_stub = Stubber(cloudwatch)
    cw_stub.add_response("describe_alarms", {"MetricAlarms": []}, {"StateValue": "ALARM"})
    cw_stub.add_response("put_metric_data", {}, None)
    cw_stub.activate()
    monkeypatch.setattr(
        commands, "Session", lambda: FakeSession({"rds": c, "cloudwatch": cloudwatch})
    )
    monkeypatch.setattr(commands, "psycopg_probe", lambda dsn, *query: outage(sim, 2.0, 20.0))
    monkeypatch.setattr(commands, "DRILL_TIMING", sim.timing())
    reports = tmp_path / "reports"
    argv = ["drill", "failover", "--outputs", str(outputs_file), "--reports-dir", str(reports)]
    assert main([*argv, "--confirm", DB]) == 1
    [report_file] = reports.glob("failover-qa7-*.json")
    report = json.loads(report_file.read_text())
    assert report["met"] is False
    assert report["error"].startswith("ClientError: An error occurred (Throttling)")
    assert report["rto_seconds"] is not None  # what was measured before the error is kept
    assert "drill failed: ClientError" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "0"])
@pytest.mark.parametrize("drill", ["failover", "restore"])
def test_item_10_objective_must_be_a_finite_positive_number(
    monkeypatch: pytest.MonkeyPatch,
    outputs_file: Path,
    capsys: pytest.CaptureFixture[str],
    value: str,
    drill: str,
) -> None:
    """Finding: `--objective nan` waited forever (no timeout compares true against nan)."""
    monkeypatch.setattr(commands, "Session", lambda: FakeSession({}))
    argv = ["drill", drill, "--outputs", str(outputs_file), "--dry-run", f"--objective={value}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        f"govdr: --objective {float(value)} is not a finite positive number of seconds; "
        "pass e.g. --objective 900\n"
    )


# --- issue 18: status alarms and the restore drill's deletion ------------------------------------


def test_item_13_status_matches_alarm_names_exactly_over_every_page() -> None:
    """Finding: status matched alarms by suffix (`dev` took `pr-dev`'s) and read only the first
    page of DescribeAlarms."""
    cloudwatch = client("cloudwatch")
    stub = Stubber(cloudwatch)
    stub.add_response(
        "describe_alarms",
        {
            "MetricAlarms": [
                {"AlarmName": "rds-cpu-pr-dev", "StateValue": "ALARM"},
                {"AlarmName": "rds-cpu-dev", "StateValue": "ALARM"},
                {"AlarmName": "someone-elses-dev", "StateValue": "ALARM"},
            ],
            "NextToken": "page-2",
        },
        {"StateValue": "ALARM"},
    )
    stub.add_response(
        "describe_alarms",
        {"MetricAlarms": [{"AlarmName": "rpo-dev", "StateValue": "ALARM"}]},
        {"StateValue": "ALARM", "NextToken": "page-2"},
    )
    stub.activate()
    assert status.platform_alarms_in_alarm(cloudwatch, "dev") == ["rds-cpu-dev", "rpo-dev"]
    stub.assert_no_pending_responses()


def test_platform_alarm_names_are_the_monitoring_stacks() -> None:
    """The drills' list of alarm names is the one the monitoring stack creates."""
    from govdr.config import DrConfig
    from govdr.stacks.monitoring import alarm_specs

    assert tuple(spec.short for spec in alarm_specs(DrConfig())) == status.PLATFORM_ALARMS


def test_item_13_the_restore_drill_deletes_only_an_instance_with_its_tag(
    rds: tuple[Any, Stubber],
) -> None:
    """Finding: the restore drill deleted whatever instance had the drill's name; now it
    checks the instance carries govdr:drill=restore and otherwise leaves it."""
    c, stubber = rds
    sim = SimTime()
    target = restore.drill_instance_id("qa7")
    _restore_calls(stubber, target)
    _tags(stubber, target, [{"Key": "owner", "Value": "someone"}])  # and no delete stubbed
    lines: list[str] = []
    report = restore.run_restore(
        c, DB, "qa7", None, objective=900, progress=lines.append, **sim.timing()
    )
    assert report["deleted"] is False
    assert report["deletion"] == (
        "rds-qa7-restore-drill does not carry the tag govdr:drill=restore, so this drill did "
        "not create it and left it alone; check who did before deleting it"
    )
    assert report["deletion"] in lines


# --- how the drills log in (issue 18) ----------------------------------------------------------


class FakeConnection:
    """What psycopg2.connect returns when the login is accepted."""

    def __init__(self) -> None:
        self.closed = False

    def cursor(self) -> Any:
        connection = self

        class Cursor:
            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def execute(self, query: str) -> None:
                assert not connection.closed

            def fetchone(self) -> tuple[int]:
                return (1,)

        return Cursor()

    def close(self) -> None:
        self.closed = True


class Connects:
    """Records every DSN handed to psycopg2.connect; refuses while ``down(t)`` says so, with
    an error that repeats the password it was given (the worst a driver could do)."""

    def __init__(self, sim: SimTime | None = None, down: Callable[[float], bool] = bool) -> None:
        self.sim = sim
        self.down = down
        self.dsns: list[dict[str, str]] = []

    def __call__(self, dsn: str, connect_timeout: int) -> FakeConnection:
        import psycopg2
        import psycopg2.extensions

        parsed = psycopg2.extensions.parse_dsn(dsn)
        self.dsns.append(parsed)
        if self.sim is not None:
            self.sim.t += 0.2
            if self.down(self.sim.t):
                raise psycopg2.OperationalError(
                    f'FATAL: PAM authentication failed for user "{parsed["user"]}" '
                    f"(password {parsed['password']})"
                )
        return FakeConnection()


class TokenSpy:
    """A real RDS client whose generate_db_auth_token calls are recorded (it signs locally
    with the stub credentials: no request is sent)."""

    def __init__(self) -> None:
        self.rds = client("rds")
        self.calls: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        real = self.rds.generate_db_auth_token

        def generate(**kwargs: Any) -> str:
            self.calls.append(kwargs)
            token: str = real(**kwargs)
            self.tokens.append(token)
            return token

        self.rds.generate_db_auth_token = generate


def _login_args(**overrides: Any) -> Any:
    import argparse

    return argparse.Namespace(**{"sslrootcert": None, **overrides})


def _secret_session() -> tuple[FakeSession, str, Stubber]:
    password = secrets.token_urlsafe(24)  # generated per run: no credential in the repository
    secretsmanager = client("secretsmanager")
    stub = Stubber(secretsmanager)
    stub.add_response(
        "get_secret_value",
        {
            "SecretString": json.dumps(
                {"username": "govdr_admin", "password": password, "dbname": "govdr"}
            )
        },
        {"SecretId": "arn:secret"},
    )
    stub.activate()
    return FakeSession({"secretsmanager": secretsmanager}), password, stub


def test_iam_login_makes_a_new_token_per_attempt_over_verify_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg2

    from govdr.lambda_support.pg_tls import CA_BUNDLE

    spy = TokenSpy()
    connects = Connects()
    monkeypatch.setattr(psycopg2, "connect", connects)
    login = commands.DrillLogin(
        FakeSession({"rds": spy.rds}),
        OUTPUTS,
        _login_args(),
        "rds-qa7.example.internal",
        5432,
        commands.AUTH_IAM,
    )
    probe = login.probe()
    for _ in range(3):
        probe()
    assert (
        spy.calls
        == [{"DBHostname": "rds-qa7.example.internal", "Port": 5432, "DBUsername": "govdr_drill"}]
        * 3
    )
    assert len(connects.dsns) == 3
    for dsn, token in zip(connects.dsns, spy.tokens, strict=True):
        assert dsn["password"] == token
        assert dsn["user"] == "govdr_drill"
        assert dsn["dbname"] == "govdr"
        assert dsn["sslmode"] == "verify-full"
        assert dsn["sslrootcert"] == str(CA_BUNDLE)
        assert dsn["require_auth"] == "password"  # the token goes as a password, inside TLS
        # A real token: a signed rds-db connect request for this host, port and user.
        assert token.startswith("rds-qa7.example.internal:5432/?Action=connect")
        assert "DBUser=govdr_drill" in token
        assert "X-Amz-Signature=" in token


def test_secret_login_reads_the_master_secret_once_and_needs_no_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The twin of the IAM login: the break-glass path asks for no token, logs in as the
    secret's user with SCRAM required, still with verify-full."""
    import psycopg2

    session, password, stub = _secret_session()
    spy = TokenSpy()
    session.clients["rds"] = spy.rds
    connects = Connects()
    monkeypatch.setattr(psycopg2, "connect", connects)
    login = commands.DrillLogin(
        session, OUTPUTS, _login_args(), "h.example.internal", 5432, commands.AUTH_SECRET
    )
    probe = login.probe()
    probe()
    probe()
    stub.assert_no_pending_responses()  # one read for both attempts
    assert spy.calls == []
    assert [d["user"] for d in connects.dsns] == ["govdr_admin"] * 2
    assert {d["password"] for d in connects.dsns} == {password}
    assert {d["require_auth"] for d in connects.dsns} == {"scram-sha-256"}
    assert {d["sslmode"] for d in connects.dsns} == {"verify-full"}


def test_probe_errors_carry_neither_the_token_nor_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg2

    from govdr.drills.probe import attempt, psycopg_probe

    sim = SimTime()
    connects = Connects(sim, down=lambda _t: True)
    monkeypatch.setattr(psycopg2, "connect", connects)
    spy = TokenSpy()
    iam = commands.DrillLogin(
        FakeSession({"rds": spy.rds}), OUTPUTS, _login_args(), "h", 5432, commands.AUTH_IAM
    )
    ok, error = attempt(iam.probe())
    assert not ok
    [token] = spy.tokens
    # attempt() keeps the first 200 characters: no prefix of the token (it starts with the
    # host and the signing key id) may be among them.
    assert token[:40] not in error
    assert "X-Amz-" not in error
    assert "[redacted]" in error
    assert error.startswith("ProbeError: OperationalError: FATAL: PAM authentication failed")

    # The twin: the same refusal through the bare probe does carry the token, so the check
    # above is not vacuous.
    ok, bare = attempt(psycopg_probe(iam.dsn))
    assert not ok
    assert spy.tokens[-1][:40] in bare

    session, password, _ = _secret_session()
    secret = commands.DrillLogin(session, OUTPUTS, _login_args(), "h", 5432, commands.AUTH_SECRET)
    ok, error = attempt(secret.probe(restore.CANARY))
    assert not ok
    assert password not in error
    assert "[redacted]" in error


def test_sslrootcert_overrides_the_pinned_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import psycopg2

    ca = tmp_path / "proxy-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    connects = Connects()
    monkeypatch.setattr(psycopg2, "connect", connects)
    login = commands.DrillLogin(
        FakeSession({"rds": TokenSpy().rds}),
        OUTPUTS,
        _login_args(sslrootcert=ca),
        "h",
        5432,
        commands.AUTH_IAM,
    )
    login.probe()()
    [dsn] = connects.dsns
    assert (dsn["sslmode"], dsn["sslrootcert"]) == ("verify-full", str(ca))


@pytest.mark.parametrize("drill", ["failover", "restore"])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_missing_ca_file_stops_the_drill_with_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    outputs_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    drill: str,
    dry_run: list[str],
) -> None:
    """No AWS client is even asked for (the session has none): nothing is done without a CA."""
    monkeypatch.setattr(commands, "Session", lambda: FakeSession({}))
    missing = tmp_path / "nope.pem"
    argv = ["drill", drill, "--outputs", str(outputs_file), "--sslrootcert", str(missing)]
    assert main([*argv, *dry_run, "--confirm", DB]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"govdr: --sslrootcert {missing}: CA bundle {missing} does not exist")
    assert "Traceback" not in err


def test_an_existing_ca_file_lets_the_dry_run_proceed(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    tmp_path: Path,
) -> None:
    """The twin of the missing CA: the same command with a file that exists runs."""
    c, stubber = rds
    describe(stubber)
    monkeypatch.setattr(commands, "Session", lambda: FakeSession({"rds": c}))
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    argv = ["drill", "failover", "--outputs", str(outputs_file), "--sslrootcert", str(ca)]
    assert main([*argv, "--dry-run"]) == 0


def test_an_unknown_auth_mode_is_refused_with_the_choices(
    outputs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["drill", "failover", "--outputs", str(outputs_file), "--auth", "password"])
    assert exited.value.code == 2
    assert "argument --auth: invalid choice: 'password' (choose from 'iam', 'secret')" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("auth", [[], ["--auth", "iam"]])
def test_cli_failover_logs_in_with_a_fresh_iam_token_per_probe_and_never_shows_it(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    auth: list[str],
) -> None:
    """The whole failover drill with the default login: every connection attempt (before,
    during and after the outage) got its own token for the endpoint's host, port and
    govdr_drill, no master secret was read (the session has no Secrets Manager), and no token
    reached the output or the report although every refusal repeated it."""
    import psycopg2

    c, stubber = rds
    sim = SimTime()
    describe(stubber)
    stub_reboot(stubber, *FAILOVER_EVENTS)
    cloudwatch = client("cloudwatch")
    cw_stub = Stubber(cloudwatch)
    cw_stub.add_response("describe_alarms", {"MetricAlarms": []}, {"StateValue": "ALARM"})
    cw_stub.add_response("put_metric_data", {}, None)
    cw_stub.activate()
    original = c.generate_db_auth_token
    tokens: list[tuple[dict[str, Any], str]] = []

    def generate(**kwargs: Any) -> str:
        token: str = original(**kwargs)
        tokens.append((kwargs, token))
        return token

    monkeypatch.setattr(c, "generate_db_auth_token", generate, raising=False)
    monkeypatch.setattr(
        commands, "Session", lambda: FakeSession({"rds": c, "cloudwatch": cloudwatch})
    )
    connects = Connects(sim, down=lambda t: 2.0 <= t < 25.0)
    monkeypatch.setattr(psycopg2, "connect", connects)
    monkeypatch.setattr(commands, "DRILL_TIMING", sim.timing())
    reports = tmp_path / "reports"
    argv = ["drill", "failover", "--outputs", str(outputs_file), "--reports-dir", str(reports)]
    assert main([*argv, *auth, "--confirm", DB, "--json"]) == 0
    captured = capsys.readouterr()
    [report_file] = reports.glob("failover-qa7-*.json")
    report = json.loads(report_file.read_text())
    assert report["met"] is True
    # One token per connection: the pre-check plus every probe attempt of the drill.
    assert len(tokens) == len(connects.dsns) == report["probe_attempts"] + 1
    assert report["probe_failures"] >= 2
    assert {json.dumps(kwargs, sort_keys=True) for kwargs, _ in tokens} == {
        json.dumps(
            {"DBHostname": "rds-qa7.example.internal", "DBUsername": "govdr_drill", "Port": 5432},
            sort_keys=True,
        )
    }
    assert [d["password"] for d in connects.dsns] == [token for _, token in tokens]
    assert {d["sslmode"] for d in connects.dsns} == {"verify-full"}
    for text in (captured.out, captured.err, report_file.read_text()):
        assert "X-Amz-" not in text
        for _, token in tokens:
            assert token[:40] not in text
    cw_stub.assert_no_pending_responses()


def test_cli_restore_verifies_with_the_master_secret_over_verify_full(
    monkeypatch: pytest.MonkeyPatch,
    rds: tuple[Any, Stubber],
    outputs_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The restore drill logs in to the restored instance with the master secret (SCRAM
    required, verify-full with the pinned CA), asks for no IAM token, and the password is in
    neither the output nor the report."""
    import psycopg2

    from govdr.lambda_support.pg_tls import CA_BUNDLE

    c, stubber = rds
    sim = SimTime()
    target = restore.drill_instance_id("qa7")
    describe(stubber)  # the guard names the target
    _restore_calls(stubber, target)
    _delete(stubber, target)
    tokens: list[dict[str, Any]] = []
    monkeypatch.setattr(
        c, "generate_db_auth_token", lambda **kw: tokens.append(kw) or "t", raising=False
    )
    session, password, secret_stub = _secret_session()
    cloudwatch = client("cloudwatch")
    cw_stub = Stubber(cloudwatch)
    cw_stub.add_response("describe_alarms", {"MetricAlarms": []}, {"StateValue": "ALARM"})
    cw_stub.add_response("put_metric_data", {}, None)
    cw_stub.activate()
    session.clients.update({"rds": c, "cloudwatch": cloudwatch})
    monkeypatch.setattr(commands, "Session", lambda: session)
    connects = Connects()
    monkeypatch.setattr(psycopg2, "connect", connects)
    monkeypatch.setattr(commands, "DRILL_TIMING", sim.timing())
    reports = tmp_path / "reports"
    argv = ["drill", "restore", "--outputs", str(outputs_file), "--reports-dir", str(reports)]
    assert main([*argv, "--confirm", DB, "--json"]) == 0
    [dsn] = connects.dsns
    assert (dsn["user"], dsn["dbname"], dsn["host"]) == (
        "govdr_admin",
        "govdr",
        "rds-qa7.example.internal",
    )
    assert (dsn["sslmode"], dsn["sslrootcert"], dsn["require_auth"]) == (
        "verify-full",
        str(CA_BUNDLE),
        "scram-sha-256",
    )
    assert tokens == []
    secret_stub.assert_no_pending_responses()
    cw_stub.assert_no_pending_responses()
    captured = capsys.readouterr()
    [report_file] = reports.glob("restore-qa7-*.json")
    assert json.loads(report_file.read_text())["verified"] is True
    for text in (captured.out, captured.err, report_file.read_text()):
        assert password not in text
