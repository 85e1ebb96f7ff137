"""``make timings``: time the README's commands and record them in bench/results/timings.json.

Each step runs as a user would run it, on this machine, and its wall time is recorded with the
date and the load average when it started (a busy machine explains a slow figure). ``test`` and
``ci_fresh_clone`` also record how many tests passed and the coverage they reported. Steps not
run keep their earlier entry. ``make figures`` then renders the README's table from the file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govdr.tools.figures import RESULTS, ROOT, TIMED_STEPS

_PASSED = re.compile(r"(\d+) passed")
_COVERAGE = re.compile(r"Total coverage: (\d+(?:\.\d+)?)%")


def _commands(step: str, clone: Path) -> tuple[list[str], Path]:
    if step == "ci_fresh_clone":
        return ["bash", ".ci/run"], clone
    return ["make", step.replace("_", "-")], ROOT


def _time(step: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="govdr-timings-") as tmp:
        clone = Path(tmp) / "govdr"
        if step == "ci_fresh_clone":
            clone_cmd = ["git", "clone", "-q", str(ROOT), str(clone)]
            subprocess.run(clone_cmd, check=True)  # noqa: S603 - fixed git invocation
        command, cwd = _commands(step, clone)
        load = round(os.getloadavg()[0], 2)
        start = time.monotonic()
        done = subprocess.run(  # noqa: S603 - the README's own commands
            command, cwd=cwd, capture_output=True, text=True, check=False
        )
        seconds = round(time.monotonic() - start, 1)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise SystemExit(f"timings: `{' '.join(command)}` failed (exit {done.returncode}):\n{tail}")
    entry: dict[str, Any] = {
        "seconds": seconds,
        "measured": datetime.now(UTC).strftime("%Y-%m-%d"),
        "load_average": load,
    }
    if step in ("test", "ci_fresh_clone"):
        passed, coverage = _PASSED.findall(output), _COVERAGE.findall(output)
        if not passed or not coverage:
            raise SystemExit(f"timings: `{' '.join(command)}` printed no test count or coverage")
        entry["tests"], entry["coverage"] = int(passed[-1]), float(coverage[-1])
    return entry


def main(argv: list[str] | None = None) -> int:
    keys = [step.key for step in TIMED_STEPS]
    parser = argparse.ArgumentParser(prog="python -m govdr.tools.timings", description=__doc__)
    parser.add_argument(
        "--steps",
        default="synth,deploy_local,test",
        help=f"comma-separated, of: {', '.join(keys)} (default: synth,deploy_local,test)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "timings.json")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in keys]
    if unknown or not steps:
        parser.error(
            f"unknown step(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(keys)}"
        )
    data: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    recorded = data.setdefault("steps", {})
    for step in steps:
        print(f"timing {step} ...", file=sys.stderr, flush=True)
        recorded[step] = _time(step)
        print(f"  {recorded[step]}", file=sys.stderr, flush=True)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
