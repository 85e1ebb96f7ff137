"""``make bench-archive``: the archiver against pg_recvlogical on the same WAL, in one run.

1. Start a throwaway PostgreSQL 15, ``pgbench -i``, then create ``ROUNDS`` wal2json slots per
   reader and a test_decoding witness slot, all at the same point.
2. Run pgbench until at least ``--transactions`` transactions are committed.
3. Drain the slots alternately (recv, archiver, archiver, recv, ...), each up to the same end LSN:
   with ``pg_recvlogical`` (wal2json format 2, the archiver's options) into a file, and with the
   archiver into a local directory. Both connect through the server's Unix socket.
4. Check exactly-once (archived transaction IDs == the witness's, in order) and write
   ``bench/results/archive.json``: transactions/s, MB/s, CPU seconds, peak RSS and the ratio of
   the medians; and, from the walsender that served each round, the streaming time (the rest
   is the reader's start-up and exit) and how busy the reader kept that server process. A run
   in which pg_recvlogical's slowest round took more than 1.5 times its fastest is reported as
   not conclusive (exit 1): the machine's speed changed meanwhile.

CPUs: in production the server's walsender runs on the RDS host and the archiver in Lambda, so
they never compete for a CPU. With two or more CPUs the drain phase gives the server CPU 0 and
the reader under test CPU 1 (the same for both readers); ``--no-pin`` shares all CPUs instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from govdr.txlog.runtime.archive import Archive, is_last_piece, parse_lsn  # noqa: E402
from govdr.txlog.runtime.archiver import OPTIONS  # noqa: E402
from tests.support.peak_rss import PeakSampler  # noqa: E402
from tests.support.pgcluster import (  # noqa: E402
    TLS_HOST,
    Postgres,
    start_cluster,
    stop_cluster,
)

DB = "bench"
ROUNDS = 5


SERVER_CPU, READER_CPU = 0, 1
MAX_REFERENCE_SPREAD = 1.5  # slowest / fastest pg_recvlogical round for a conclusive run


def pinning_possible() -> bool:
    return len(os.sched_getaffinity(0) & {SERVER_CPU, READER_CPU}) == 2


def pin_server(pg: Postgres) -> None:
    """Put the postmaster on SERVER_CPU: every walsender forked from now on inherits it."""
    os.sched_setaffinity(postmaster_pid(pg), {SERVER_CPU})


def _pin_reader() -> None:
    os.sched_setaffinity(0, {READER_CPU})


CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")
QUOTA_PERIOD_US = 100_000


class ReaderQuota:
    """A cgroup whose CPU quota is ``share`` of one CPU: the reader runs in it, so the reader,
    not the server, is the slower side (a slower machine's reader CPU, emulated with the
    kernel's CFS bandwidth control, v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``)."""

    def __init__(self, share: float) -> None:
        quota = int(share * QUOTA_PERIOD_US)
        name = f"govdr-bench-reader-{os.getpid()}"
        if (CGROUP_V2 / "cgroup.controllers").exists():
            self.path = CGROUP_V2 / name
            settings = {"cpu.max": f"{quota} {QUOTA_PERIOD_US}"}
        else:
            self.path = CGROUP_V1 / name
            settings = {
                "cpu.cfs_period_us": str(QUOTA_PERIOD_US),
                "cpu.cfs_quota_us": str(quota),
            }
        try:
            self.path.mkdir()
            for key, value in settings.items():
                (self.path / key).write_text(value)
        except OSError as exc:
            self.close()
            raise RuntimeError(
                f"--reader-cpu-quota needs a writable cgroup CPU controller ({self.path}: "
                f"{exc.strerror or exc}); run as root on a machine with cgroups, or leave it out"
            ) from None

    def enter(self) -> None:
        """Move the calling process into the cgroup (a preexec_fn of the reader)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def close(self) -> None:
        with contextlib.suppress(OSError):  # never created, or already gone
            self.path.rmdir()


class WalsenderWatch:
    """Follows the walsender that serves one reader: how long it lived and its CPU seconds.

    The server process that decodes the WAL for the reader is the ceiling for any reader. Its
    lifetime is the streaming part of the reader's run (the rest is the reader's own start-up
    and exit); CPU seconds over lifetime is how busy the reader kept it.
    """

    FIND_EVERY, SAMPLE_EVERY = 0.002, 0.02

    def __init__(self, postmaster: int) -> None:
        self._children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
        if not self._children.exists():
            raise RuntimeError(
                f"{self._children} is missing: following the server's walsender needs Linux "
                "with /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)"
            )
        self._known = self._walsenders()
        self._stop = threading.Event()
        self.lifetime: float | None = None
        self.cpu: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _walsenders(self) -> set[int]:
        found = set()
        for pid in self._children.read_text().split():
            try:
                if b"walsender" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(int(pid))
            except OSError:  # exited meanwhile
                continue
        return found

    def _watch(self) -> None:
        while not self._stop.is_set():
            new = self._walsenders() - self._known
            if new:
                break
            time.sleep(self.FIND_EVERY)
        else:
            return
        schedstat = Path(f"/proc/{min(new)}/schedstat")
        started = time.perf_counter()
        while True:
            try:
                cpu_ns = int(schedstat.read_text().split()[0])
            except OSError:  # the walsender has exited
                break
            self.cpu, self.lifetime = cpu_ns / 1e9, time.perf_counter() - started
            time.sleep(self.SAMPLE_EVERY)

    def finish(self) -> None:
        self._stop.set()
        self._thread.join()


def postmaster_pid(pg: Postgres) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


def timed(
    pin: bool,
    postmaster: int,
    command: list[str],
    quota: ReaderQuota | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Run a command; return its wall and CPU seconds, peak RSS, and its walsender's figures."""
    watch = WalsenderWatch(postmaster)

    def setup() -> None:
        if pin:
            _pin_reader()
        if quota is not None:
            quota.enter()

    started = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - fixed tool invocations
        command, preexec_fn=setup if pin or quota else None, **kwargs
    )
    # Not wait4's ru_maxrss: it includes this process's memory from before the exec
    # (tests/support/peak_rss.py).
    memory = PeakSampler(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    peak = memory.finish()
    watch.finish()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        said = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        raise RuntimeError(
            f"{command[0]} exited with {proc.returncode}" + (f": {said[-300:]}" if said else "")
        )
    if watch.lifetime is None or watch.cpu is None:
        raise RuntimeError(f"{command[0]}: its walsender was not seen")
    return {
        "seconds": elapsed,
        "rss_kib": peak // 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
        "streaming": watch.lifetime,
        "server_cpu": watch.cpu,
    }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def run(
    pg: Postgres,
    transactions: int,
    work: Path,
    pin: bool,
    bulk_rows: int | None = None,
    quota: ReaderQuota | None = None,
    reader_cpu_quota: float | None = None,
) -> dict[str, Any]:
    pg.psql(f"CREATE DATABASE {DB}")
    pg.pgbench("-i", "-s", "10", "-q", dbname=DB)
    if bulk_rows:
        pg.psql("CREATE TABLE bulk (id bigint PRIMARY KEY, note text)", DB)
    # ROUNDS slots per reader, drained alternately: the machine's background noise then hits
    # both readers alike, and the medians are compared.
    readers = [("recv", i) for i in range(ROUNDS)] + [("archiver", i) for i in range(ROUNDS)]
    for kind, i in readers:
        pg.psql(f"SELECT pg_create_logical_replication_slot('{kind}{i}', 'wal2json')", DB)
    pg.psql("SELECT pg_create_logical_replication_slot('witness', 'test_decoding')", DB)
    start_lsn = pg.psql("SELECT pg_current_wal_lsn()", DB)
    clients = 4
    load_started = time.perf_counter()
    if bulk_rows:
        # One transaction of bulk_rows rows of about 100 bytes (a bulk load or data correction).
        insert = f"INSERT INTO bulk SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, {int(bulk_rows)}) g"  # noqa: E501, S608 - an int
        pg.psql(insert, DB)
    else:
        pg.pgbench(
            "-n",
            "-c",
            str(clients),
            "-j",
            "2",
            "-t",
            str(-(-transactions // clients)),
            dbname=DB,
            fast_commit=True,
        )
    load_seconds = time.perf_counter() - load_started
    # The load commits asynchronously: flush the WAL so decoding sees every commit.
    pg.psql("CHECKPOINT", DB)
    end_lsn = pg.psql("SELECT pg_current_wal_flush_lsn()", DB)
    if pin:
        pin_server(pg)

    options = [arg for k, v in OPTIONS.items() for arg in ("-o", f"{k}={v}")]
    # Both readers connect the same way: the Unix socket, or TCP with verified TLS and SCRAM
    # (production reaches RDS over TLS); the password comes from the environment.
    if pg.tls is not None and pg.password is not None:
        reader_dsn = (
            f"host={TLS_HOST} port={pg.port} user=postgres dbname={DB} sslmode=verify-full "
            f"sslrootcert={pg.tls.ca_file}"
        )  # the server admits TCP only as hostssl with scram-sha-256 (tests/support/pgcluster)
        archiver_dsn = reader_dsn
        reader_env: dict[str, str] | None = {**os.environ, "PGPASSWORD": pg.password}
    else:
        reader_dsn = pg.dsn(DB)
        # The fixture's Unix socket carries no TLS; a named sslmode is kept.
        archiver_dsn = f"{pg.dsn(DB)} sslmode=disable"
        reader_env = None
    runs: dict[str, list[dict[str, float]]] = {"recv": [], "archiver": []}
    postmaster = postmaster_pid(pg)
    archives: list[Path] = []
    # recv, archiver, archiver, recv, recv, archiver, ...: neither reader always goes first.
    order = [("recv", "archiver")[(i + 1) // 2 % 2] for i in range(2 * ROUNDS)]
    used = {"recv": 0, "archiver": 0}
    for kind in order:
        i = used[kind]
        used[kind] += 1
        if kind == "recv":
            out = work / f"recv{i}.jsonl"
            figures = timed(
                pin,
                postmaster,
                [
                    str(pg.bin_dir / "pg_recvlogical"),
                    "-d",
                    reader_dsn,
                    "--slot",
                    f"recv{i}",
                    "--start",
                    "--endpos",
                    end_lsn,
                    "-f",
                    str(out),
                    "--no-loop",
                    *options,
                ],
                quota,
                env=reader_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            runs[kind].append({**figures, "size": out.stat().st_size})
        else:
            directory = work / f"archive{i}"
            directory.mkdir()
            figures = timed(
                pin,
                postmaster,
                [
                    sys.executable,
                    "-m",
                    "govdr.txlog.runtime",
                    "--dsn",
                    archiver_dsn,
                    "--dir",
                    str(directory),
                    # A local key for the seals (the deployed archiver's comes from KMS).
                    "--key-file",
                    str(work / f"archive{i}.key"),
                    "--slot",
                    f"archiver{i}",
                    "--stop-lsn",
                    end_lsn,
                    "--idle",
                    "30",
                ],
                quota,
                env=reader_env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            runs[kind].append({**figures, "size": dir_bytes(directory)})
            archives.append(directory)

    witness = [
        int(line.split()[1])
        for line in pg.psql(
            "SELECT data FROM pg_logical_slot_peek_changes('witness', NULL, NULL, "
            "'skip-empty-xacts', '1') WHERE data LIKE 'COMMIT %'",
            DB,
        ).splitlines()
    ]
    # Compare transactions that changed rows: creating a slot can itself commit an empty
    # transaction that only the slots created before it see.
    archived_runs = [_archived(d) for d in archives]
    exactly_once = all([xid for xid, _ in run] == witness for run in archived_runs)
    if bulk_rows:  # and the one transaction holds every row
        exactly_once = exactly_once and all(
            [changes for _, changes in run] == [bulk_rows] for run in archived_runs
        )
    committed = len(witness)

    def side(kind: str) -> dict[str, Any]:
        """The median round by wall time, with the highest peak RSS of all rounds, and the
        medians of the streaming figures over all rounds."""
        rounds = sorted(runs[kind], key=lambda r: r["seconds"])
        typical = rounds[len(rounds) // 2]
        seconds, size = typical["seconds"], typical["size"]

        def mid(key: str) -> float:
            return statistics.median_low(r[key] for r in rounds)

        streaming = mid("streaming")
        return {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(typical["cpu"], 2),
            "transactions_per_second": round(committed / seconds),
            "output_mb": round(size / 1e6, 1),
            "mb_per_second": round(size / 1e6 / seconds, 1),
            "peak_rss_mb": round(max(r["rss_kib"] for r in rounds) / 1024, 1),
            "streaming_seconds": round(streaming, 3),
            "start_and_exit_seconds": round(mid("seconds") - streaming, 3),
            "streaming_transactions_per_second": round(committed / streaming),
            "server_busy": round(mid("server_cpu") / streaming, 3),
        }

    result: dict[str, Any] = {
        "workload": {
            "bulk_rows": bulk_rows,
            "pgbench_transactions": committed,
            "pgbench_seconds": round(load_seconds, 1),
            "start_lsn": start_lsn,
            "end_lsn": end_lsn,
            "wal_mb_decoded": round((parse_lsn(end_lsn) - parse_lsn(start_lsn)) / 1e6, 1),
        },
        "rounds": ROUNDS,
        "pg_recvlogical": side("recv"),
        "archiver": side("archiver"),
        "all_seconds": {k: [round(r["seconds"], 2) for r in v] for k, v in runs.items()},
        "all_server_busy": {
            k: [round(r["server_cpu"] / r["streaming"], 3) for r in v] for k, v in runs.items()
        },
        "exactly_once": exactly_once,
        "archived_transactions": [len(r) for r in archived_runs],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": _commit(),
        "transport": "tcp, tls verify-full, scram-sha-256" if pg.tls else "unix socket",
        # The reader's CPU quota (fraction of one CPU, cgroup CFS bandwidth), if any.
        "reader_cpu_quota": reader_cpu_quota,
        "cpus_pinned": {"server": SERVER_CPU, "reader": READER_CPU} if pin else None,
    }
    recv, archiver = result["pg_recvlogical"], result["archiver"]
    ratio = recv["seconds"] / archiver["seconds"]
    # Three decimals: a ratio of 0.996 must not read as 1.0.
    result["ratio_archiver_vs_pg_recvlogical"] = round(ratio, 3)
    # The same ratio without each reader's own start-up and exit (time outside its walsender).
    result["ratio_streaming"] = round(recv["streaming_seconds"] / archiver["streaming_seconds"], 3)
    # The reference tool does the same work in every round: if its slowest round took far
    # longer than its fastest, the machine's speed changed during the run and the ratio of the
    # medians says more about when each reader ran than about the readers.
    recv_seconds = [r["seconds"] for r in runs["recv"]]
    result["reference_spread"] = round(max(recv_seconds) / min(recv_seconds), 2)
    result["steady_machine"] = result["reference_spread"] <= MAX_REFERENCE_SPREAD
    result["targets"] = {
        "throughput_ratio_at_least_1": ratio >= 1.0,
        "peak_rss_at_most_128_mb": result["archiver"]["peak_rss_mb"] <= 128,
        "exactly_once": exactly_once,
    }
    return result


def _archived(directory: Path) -> list[tuple[int, int]]:
    """(xid, changes) of each archived transaction with changes, parts streamed, not joined."""
    found: list[tuple[int, int]] = []
    changes = 0
    for segment in Archive(directory).segments():
        for piece in segment.pieces(segment.read()):
            changes += len(piece["changes"])
            if is_last_piece(piece):
                # Creating a slot can itself commit an empty transaction that only the slots
                # created before it see: compare transactions that changed rows.
                if changes:
                    found.append((piece["xid"], changes))
                changes = 0
    return found


def _commit() -> str:
    """The checkout measured (with ``+changes`` when it differs from its commit)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            # Results files are this tool's output, not the code measured.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "archive.json")
    parser.add_argument(
        "--no-pin", action="store_true", help="let server and reader share all CPUs (see above)"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="both readers connect over TCP with verified TLS and SCRAM (production reaches RDS "
        "over TLS); e.g. --out bench/results/archive-tls.json",
    )
    parser.add_argument(
        "--reader-cpu-quota",
        type=float,
        default=None,
        help="give each reader this fraction of one CPU (a cgroup CPU quota, root only) so that "
        "the reader, not the server, is the slower side; e.g. 0.5 --out "
        "bench/results/archive-reader-limited.json",
    )
    parser.add_argument(
        "--bulk-rows",
        type=int,
        default=None,
        help="instead of pgbench, one transaction inserting this many rows of about 100 bytes "
        "(the archiver spills it to disk); e.g. --bulk-rows 1000000 --out "
        "bench/results/archive-bulk.json",
    )
    args = parser.parse_args(argv)
    if args.bulk_rows is not None and not 1 <= args.bulk_rows <= 100_000_000:
        parser.error(f"--bulk-rows {args.bulk_rows}: give 1 to 100000000 rows")
    if args.reader_cpu_quota is not None and not 0.05 <= args.reader_cpu_quota <= 1.0:
        parser.error(f"--reader-cpu-quota {args.reader_cpu_quota}: give 0.05 to 1.0 of a CPU")
    pin = not args.no_pin and pinning_possible()
    try:
        quota = ReaderQuota(args.reader_cpu_quota) if args.reader_cpu_quota else None
    except RuntimeError as exc:
        print(f"bench-archive: {exc}", file=sys.stderr)
        return 2
    pg = start_cluster(tls=args.tls)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(
                pg, args.transactions, Path(tmp), pin, args.bulk_rows, quota, args.reader_cpu_quota
            )
    except RuntimeError as exc:
        print(f"bench-archive: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_cluster(pg)
        if quota is not None:
            quota.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not result["steady_machine"]:
        print(
            f"bench-archive: pg_recvlogical's rounds took {min(result['all_seconds']['recv'])}-"
            f"{max(result['all_seconds']['recv'])} s (spread {result['reference_spread']}x, "
            f"allowed {MAX_REFERENCE_SPREAD}x): the machine's speed changed during the run, so "
            "the ratio is not conclusive; run it again on a quieter machine",
            file=sys.stderr,
        )
        return 1
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
