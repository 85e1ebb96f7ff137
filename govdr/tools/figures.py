"""The README's measured figures, rendered from the results files that hold them.

Every number the README states about speed or timing comes from a file a measurement wrote:
``bench/results/archive*.json`` (``make bench-archive``) and ``bench/results/timings.json``
(``make timings``). The README marks each rendered part::

    <!-- figures: archive -->
    ...rendered text...
    <!-- /figures -->

``make figures`` rewrites the marked parts; ``python -m govdr.tools.figures --check`` (run by
the test suite) exits 1 naming each part that differs from its files, so a figure edited by
hand or a result file changed without the README is caught.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
_REGION = re.compile(
    r"(<!-- figures: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S
)


class FiguresError(Exception):
    """A results file is missing or malformed, or the README lacks a marked part."""


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise FiguresError(f"{path}: not JSON ({exc}); re-run the measurement") from None
    if not isinstance(data, dict):
        raise FiguresError(f"{path}: not a JSON object; re-run the measurement")
    return data


def _field(data: dict[str, Any], path: str, source: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise FiguresError(
                f"{source}: no field {path!r}; it was written by another version of the "
                "measurement: re-run it"
            )
        value = value[part]
    return value


# (file, what the run was): the variants of the archive benchmark the README reports, in order.
ARCHIVE_VARIANTS = (
    ("archive.json", "200,000 pgbench transactions, server and reader on their own CPU"),
    ("archive-1m.json", "1,000,000 transactions, own CPUs"),
    ("archive-shared-cpus.json", "200,000 transactions, CPUs shared (production never shares)"),
    ("archive-reader-limited.json", "200,000 transactions, the reader given less CPU"),
    ("archive-tls.json", "200,000 transactions over TCP with verified TLS, own CPUs"),
)


def _yes(flag: Any) -> str:
    return "met" if flag else "**not met**"


def _unsteady(data: dict[str, Any]) -> str:
    """A run whose reference rounds spread too far is named as not conclusive."""
    if data.get("steady_machine") is False:
        return (
            f", **not conclusive**: pg_recvlogical's rounds spread "
            f"{data.get('reference_spread')}x (the machine's speed changed)"
        )
    return ""


def render_archive(results: Path) -> str:
    main = _load(results, "archive.json")
    if main is None:
        raise FiguresError(f"{results / 'archive.json'} is missing; run `make bench-archive`")
    rows = []
    for name, label in ARCHIVE_VARIANTS:
        data = _load(results, name)
        if data is None:
            continue
        source = str(results / name)
        quota = data.get("reader_cpu_quota")
        if quota:
            label = f"{label} ({quota} of a CPU each: a cgroup CPU quota)"
        if "commit" not in data:
            label += ", an earlier version (no date or commit recorded)"
        label += _unsteady(data)
        arch = _field(data, "archiver", source)
        recv = _field(data, "pg_recvlogical", source)
        rows.append(
            f"| {label} (`{name}`) "
            f"| {_field(arch, 'transactions_per_second', source):,} vs "
            f"{_field(recv, 'transactions_per_second', source):,} "
            f"| {_field(data, 'ratio_archiver_vs_pg_recvlogical', source):.3f}x "
            f"| {_field(arch, 'server_busy', source):.2f} vs "
            f"{_field(recv, 'server_busy', source):.2f} "
            f"| {_field(arch, 'cpu_seconds', source)} vs {_field(recv, 'cpu_seconds', source)} s "
            f"| {_field(arch, 'peak_rss_mb', source)} MB "
            f"| {'yes' if _field(data, 'exactly_once', source) else '**no**'} "
            f"| {data.get('measured', 'not recorded')}, {data.get('commit', 'not recorded')} |"
        )
    targets = _field(main, "targets", str(results / "archive.json"))
    lines = [
        "| run | transactions/s, archiver vs pg_recvlogical | ratio | server busy | CPU | "
        "archiver peak RSS | exactly once | measured, commit |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Targets in `archive.json`: throughput >= 1.0x pg_recvlogical "
        f"{_yes(targets.get('throughput_ratio_at_least_1'))}, peak RSS <= 128 MB "
        f"{_yes(targets.get('peak_rss_at_most_128_mb'))}, exactly once "
        f"{_yes(targets.get('exactly_once'))} (medians of "
        f"{_field(main, 'rounds', 'archive.json')} alternating rounds on "
        f"{_field(main, 'machine.cpus', 'archive.json')} CPUs).",
    ]
    return "\n".join(lines) + "\n"


BULK = "archive-bulk.json"


def render_bulk(results: Path) -> str:
    """One transaction of many rows: the archiver (spilling it to disk) vs pg_recvlogical."""
    data = _load(results, BULK)
    if data is None:
        return (
            f'Not measured yet: run `make bench-archive BENCH_ARGS="--bulk-rows 1000000 --out '
            f'bench/results/{BULK}"`.\n'
        )
    source = str(results / BULK)
    arch = _field(data, "archiver", source)
    recv = _field(data, "pg_recvlogical", source)
    rows = _field(data, "workload.bulk_rows", source)
    return (
        "| one transaction of | seconds, archiver vs pg_recvlogical | ratio | CPU | peak RSS, "
        "archiver vs pg_recvlogical | exactly once, every row | measured, commit |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {rows:,} rows (`{BULK}`){_unsteady(data)} "
        f"| {_field(arch, 'seconds', source)} vs {_field(recv, 'seconds', source)} "
        f"| {_field(data, 'ratio_archiver_vs_pg_recvlogical', source):.3f}x "
        f"| {_field(arch, 'cpu_seconds', source)} vs {_field(recv, 'cpu_seconds', source)} s "
        f"| {_field(arch, 'peak_rss_mb', source)} vs {_field(recv, 'peak_rss_mb', source)} MB "
        f"| {'yes' if _field(data, 'exactly_once', source) else '**no**'} "
        f"| {data.get('measured', 'not recorded')}, {data.get('commit', 'not recorded')} |\n"
    )


@dataclass(frozen=True)
class _Step:
    key: str
    label: str


TIMED_STEPS = (
    _Step("synth", "`make synth` when installed"),
    _Step(
        "deploy_local",
        "`make deploy-local` when installed (synth, compliance gate, emulator deploy, checks)",
    ),
    _Step("test", "`make test` when installed (lint, then the whole suite)"),
    _Step("ci_fresh_clone", "`.ci/run` on a fresh clone (venv and npm install, then `make test`)"),
)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def render_timings(results: Path) -> str:
    data = _load(results, "timings.json")
    if data is None:
        raise FiguresError(f"{results / 'timings.json'} is missing; run `make timings`")
    source = str(results / "timings.json")
    steps = _field(data, "steps", source)
    rows = []
    for step in TIMED_STEPS:
        entry = steps.get(step.key) if isinstance(steps, dict) else None
        if entry is None:
            continue
        where = f"{source} step {step.key}"
        detail = ""
        if entry.get("tests") is not None:
            detail = f"; {entry['tests']} tests passed, coverage {entry['coverage']} %"
        rows.append(
            f"| {step.label} | {_duration(float(_field(entry, 'seconds', where)))}{detail} "
            f"| {_field(entry, 'measured', where)}, load {_field(entry, 'load_average', where)} |"
        )
    if not rows:
        raise FiguresError(f"{source}: no step timed; run `make timings`")
    return (
        f"Measured on a {_field(data, 'machine.cpus', source)}-CPU machine whose speed varies "
        "between hours (the load average is the machine's when the step started):"
        "\n\n| step | time | measured |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


RENDERERS: dict[str, Callable[[Path], str]] = {
    "archive": render_archive,
    "archive-bulk": render_bulk,
    "timings": render_timings,
}


def render(readme: str, results: Path) -> str:
    """The README with every marked part rendered from ``results``."""
    found = {m["name"] for m in _REGION.finditer(readme)}
    missing = sorted(set(RENDERERS) - found)
    if missing:
        raise FiguresError(
            f"the README has no marked part for {', '.join(missing)}; add "
            + " and ".join(f"'<!-- figures: {n} -->' ... '<!-- /figures -->'" for n in missing)
        )
    unknown = sorted(found - set(RENDERERS))
    if unknown:
        raise FiguresError(
            f"the README marks unknown parts {', '.join(unknown)}; known: {', '.join(RENDERERS)}"
        )

    def fill(match: re.Match[str]) -> str:
        return match[1] + RENDERERS[match["name"]](results) + match[4]

    return _REGION.sub(fill, readme)


def differing_parts(readme: str, results: Path) -> list[str]:
    rendered = render(readme, results)
    have = {m["name"]: m["body"] for m in _REGION.finditer(readme)}
    want = {m["name"]: m["body"] for m in _REGION.finditer(rendered)}
    return sorted(name for name in want if have.get(name) != want[name])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m govdr.tools.figures",
        description="Render the README's measured figures from bench/results/*.json.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        if args.check:
            differ = differing_parts(text, args.results)
            if differ:
                print(
                    f"{args.readme}: the figures of {', '.join(differ)} differ from "
                    f"{args.results}; run `make figures` (never edit them by hand)",
                    file=sys.stderr,
                )
                return 1
            return 0
        args.readme.write_text(render(text, args.results))
    except (FiguresError, OSError) as exc:
        print(f"figures: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
