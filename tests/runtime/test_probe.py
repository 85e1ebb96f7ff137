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
