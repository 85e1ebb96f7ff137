"""The drills' connection probe against a real PostgreSQL that is stopped and started.

The server is stopped for a known time; the outage the probe measures (first refused
connection to first accepted one) must match the true one within the probe's resolution.
"""

from __future__ import annotations

import threading
import time

import pytest

from govdr.drills.probe import ProbeLog, ProbeTimeout, psycopg_probe, wait_for
from tests.support.pgcluster import Postgres

INTERVAL = 0.1
OUTAGE_SECONDS = 3.0


@pytest.mark.control("CP-10")
def test_probe_measures_the_true_outage(postgres: Postgres) -> None:
    probe = psycopg_probe(postgres.dsn(), timeout_seconds=2)
    truth: dict[str, float] = {}

    def outage() -> None:
        time.sleep(0.5)
        truth["stop"] = time.monotonic()
        postgres.ctl("-m", "fast", "-w", "stop")
        truth["stopped"] = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        truth["start"] = time.monotonic()
        postgres.ctl("-w", "start", "-l", str(postgres.socket_dir / "server.log"))
        truth["started"] = time.monotonic()

    thread = threading.Thread(target=outage)
    start = time.monotonic()
    thread.start()
    log = ProbeLog()
    try:
        down = wait_for(probe, accepting=False, start=start, timeout=30, interval=INTERVAL, log=log)
        up = wait_for(probe, accepting=True, start=start, timeout=60, interval=INTERVAL, log=log)
    finally:
        thread.join()
    # The server refuses from some point during `pg_ctl stop` until some point during
    # `pg_ctl start`; the probe sees each change within one interval plus one attempt.
    assert truth["stop"] <= down <= truth["stopped"] + INTERVAL + 0.5
    assert truth["start"] <= up <= truth["started"] + INTERVAL + 0.5
    measured = up - down
    true_min = truth["start"] - truth["stopped"]
    true_max = truth["started"] - truth["stop"]
    assert true_min - INTERVAL - 0.5 <= measured <= true_max + INTERVAL + 0.5
    assert abs(measured - OUTAGE_SECONDS) < 1.5
    refused = [error for _, ok, error in log.attempts if not ok]
    assert refused and all("OperationalError" in e for e in refused)


def test_probe_gives_up_at_its_timeout_with_the_error(postgres: Postgres) -> None:
    wrong_port = psycopg_probe(f"host={postgres.socket_dir} port=1 user=postgres", 1)
    started = time.monotonic()
    with pytest.raises(ProbeTimeout, match="not accepting connections within 1 s"):
        wait_for(wrong_port, accepting=True, start=started, timeout=1, interval=0.2)
    assert time.monotonic() - started < 3


def test_item_10_the_failover_drill_connects_first_and_changes_nothing_when_it_cannot(
    postgres: Postgres,
) -> None:
    """Finding: the drill requested the failover before it had proven it could connect; with a
    probe that cannot reach the (real) server it now refuses before any RDS change."""
    import boto3
    from botocore.stub import Stubber

    from govdr.drills import failover

    rds = boto3.client(
        "rds", region_name="eu-central-2", aws_access_key_id="x", aws_secret_access_key="x"
    )
    db = {
        "DBInstanceIdentifier": "rds-qa7",
        "DBInstanceStatus": "available",
        "MultiAZ": True,
        "AvailabilityZone": "eu-central-2a",
    }
    with Stubber(rds) as stub:
        # One DescribeDBInstances and no RebootDBInstance: an unexpected call fails the test.
        stub.add_response("describe_db_instances", {"DBInstances": [db]}, None)
        wrong_port = psycopg_probe(
            f"host={postgres.socket_dir} port=1 user=postgres", timeout_seconds=1
        )
        with pytest.raises(failover.DrillError, match="cannot connect to rds-qa7 before the"):
            failover.run_failover(rds, "rds-qa7", wrong_port, objective=900)
        stub.assert_no_pending_responses()
        # The twin: the same server through the right socket passes the check and the drill
        # goes on to request the failover (answered here with an error to stop it there).
        stub.add_response("describe_db_instances", {"DBInstances": [db]}, None)
        stub.add_client_error("reboot_db_instance", "InvalidDBInstanceState", "stop", 400)
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError, match="InvalidDBInstanceState"):
            failover.run_failover(
                rds, "rds-qa7", psycopg_probe(postgres.dsn(), timeout_seconds=2), objective=900
            )
        stub.assert_no_pending_responses()


def test_item_10_one_refused_connection_is_not_an_outage(postgres: Postgres) -> None:
    """Finding: one failed probe counted as the outage; against a real server that refuses one
    connection (a bad attempt between good ones) no outage is seen with two in a row needed."""
    from govdr.drills.failover import OUTAGE_CONSECUTIVE_FAILURES

    good = psycopg_probe(postgres.dsn(), timeout_seconds=2)
    bad = psycopg_probe(f"host={postgres.socket_dir} port=1 user=postgres", timeout_seconds=1)
    sequence = [good, bad, good, good, good]
    calls = iter(sequence)

    def probe() -> None:
        next(calls, good)()

    log = ProbeLog()
    started = time.monotonic()
    with pytest.raises(ProbeTimeout, match="not unreachable within 1 s"):
        wait_for(
            probe,
            accepting=False,
            start=started,
            timeout=1,
            interval=0.05,
            log=log,
            consecutive=OUTAGE_CONSECUTIVE_FAILURES,
        )
    assert [ok for _, ok, _ in log.attempts[:3]] == [True, False, True]
    # The twin: two refusals in a row are an outage, timed at the first of them.
    calls = iter([good, bad, bad, good])
    log = ProbeLog()
    started = time.monotonic()
    down = wait_for(
        probe, accepting=False, start=started, timeout=5, interval=0.05, log=log, consecutive=2
    )
    assert [ok for _, ok, _ in log.attempts] == [True, False, False]
    # (attempt times are logged rounded to 1 ms; a refused socket connect takes less)
    assert started + log.attempts[1][0] - 0.001 <= down < started + log.attempts[2][0]
