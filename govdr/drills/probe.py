"""A real connection probe: is the database accepting (TLS) connections right now?

The probe opens a new connection and runs ``SELECT 1`` each time; an open connection that
survived would say nothing about a failover. Times come from an injectable monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class ProbeTimeout(RuntimeError):
    """The database did not reach the awaited state in time; the message says which."""


@dataclass
class ProbeLog:
    """What the probe saw: (seconds since start, accepted?, error) per attempt."""

    attempts: list[tuple[float, bool, str]] = field(default_factory=list)


def psycopg_probe(
    dsn: str | Callable[[], str], query: str = "SELECT 1", timeout_seconds: int = 3
) -> Callable[[], None]:
    """Connect with ``dsn`` (sslmode in it) and run ``query``; raise if that fails.

    A callable ``dsn`` is called once per attempt: short-lived credentials such as an IAM
    database authentication token are made afresh for every connection.
    """

    def probe() -> None:
        import psycopg2

        connection = psycopg2.connect(
            dsn() if callable(dsn) else dsn, connect_timeout=timeout_seconds
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(query)
                cursor.fetchone()
        finally:
            connection.close()

    return probe


def attempt(probe: Callable[[], None]) -> tuple[bool, str]:
    try:
        probe()
    except Exception as exc:  # any failure to connect or query counts as "not accepting"
        return False, f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return True, ""


def wait_for(
    probe: Callable[[], None],
    *,
    accepting: bool,
    start: float,
    timeout: float,
    interval: float = 1.0,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    log: ProbeLog | None = None,
    on_wait: Callable[[float], None] | None = None,
    consecutive: int = 1,
) -> float:
    """Probe until the database is (``accepting``) or is not accepting connections.

    The state counts once ``consecutive`` attempts in a row saw it. Returns the clock time at
    which the first attempt of that run ended (the connection accepted, or refused):
    conservative, it includes the attempt's own duration. Raises ProbeTimeout when
    ``timeout`` seconds after ``start`` have passed without it.
    """
    log = log if log is not None else ProbeLog()
    run: list[float] = []
    while True:
        at = clock()
        ok, error = attempt(probe)
        log.attempts.append((round(at - start, 3), ok, error))
        if ok == accepting:
            run.append(clock())
            if len(run) >= consecutive:
                return run[0]
        else:
            run.clear()
        if clock() - start >= timeout:
            state = "accepting connections" if accepting else "unreachable"
            raise ProbeTimeout(
                f"the database was not {state} within {timeout:.0f} s"
                + (f" (last error: {error})" if error else "")
            )
        if on_wait is not None:
            on_wait(clock() - start)
        sleep(interval)
