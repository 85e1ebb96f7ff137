"""checkov over a synthesized cloud assembly: zero failed checks, each accepted one explained.

Run by ``make synth`` (and so by ``make deploy-local`` and ``make deploy``) after CDK's own
gate, and by the suite. checkov runs from its own venv (``.checkov-venv``, pinned in
requirements-checkov.lock); ``GOVDR_CHECKOV`` names its executable. A check accepted in a
template (``Metadata.checkov.skip``, written by :mod:`govdr.constructs.scanner_notes` where the
resource is built) must carry its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class ScanError(Exception):
    """checkov could not run or its report is unreadable."""


@dataclass(frozen=True)
class CheckovFinding:
    check_id: str
    resource: str
    file: str
    name: str

    def __str__(self) -> str:
        return f"{self.file}: {self.resource}: {self.check_id} {self.name}"


@dataclass(frozen=True)
class ScanReport:
    resources: int
    passed: int
    failed: list[CheckovFinding]
    skipped: list[dict[str, str]]
    unexplained: list[str]


def checkov_executable() -> str:
    path = os.environ.get("GOVDR_CHECKOV") or str(ROOT / ".checkov-venv" / "bin" / "checkov")
    if not Path(path).is_file():
        raise ScanError(f"checkov is not installed at {path}; run `make install`")
    return path


def scan(directory: Path) -> ScanReport:
    """checkov's CloudFormation checks over every template in ``directory``."""
    if not any(directory.glob("*.template.json")):
        raise ScanError(f"{directory} holds no *.template.json; run `make synth` first")
    done = subprocess.run(  # noqa: S603 - the pinned checkov, fixed arguments
        [
            checkov_executable(),
            "--directory",
            str(directory),
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report: Any = json.loads(done.stdout)
    except ValueError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ScanError(f"checkov exited {done.returncode} without a report: {tail}") from None
    reports = report if isinstance(report, list) else [report]
    failed, skipped = [], []
    passed = resources = 0
    for part in reports:
        if not isinstance(part, dict) or part.get("check_type") != "cloudformation":
            continue
        summary = part.get("summary", {})
        passed += int(summary.get("passed", 0))
        resources += int(summary.get("resource_count", 0))
        results = part.get("results", {})
        for item in results.get("failed_checks", []):
            failed.append(
                CheckovFinding(
                    item["check_id"],
                    item["resource"],
                    Path(item["file_path"]).name,
                    item.get("check_name", ""),
                )
            )
        for item in results.get("skipped_checks", []):
            skipped.append(
                {
                    "check_id": item["check_id"],
                    "resource": item["resource"],
                    "file": Path(item["file_path"]).name,
                    "comment": (item.get("check_result") or {}).get("suppress_comment") or "",
                }
            )
    if resources == 0:
        raise ScanError(f"checkov scanned no CloudFormation resource in {directory}")
    unexplained = [
        f"{s['file']}: {s['resource']}: {s['check_id']} is skipped without its reason"
        for s in skipped
        if len(s["comment"].strip()) < 20
    ]
    return ScanReport(resources, passed, failed, skipped, unexplained)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m govdr.compliance.checkov_scan",
        description="checkov over a cloud assembly: exit 1 on a failed or unexplained check.",
    )
    parser.add_argument("directory", type=Path, nargs="?", default=ROOT / "cdk.out")
    args = parser.parse_args(argv)
    try:
        report = scan(args.directory)
    except ScanError as exc:
        print(f"checkov: {exc}", file=sys.stderr)
        return 2
    for finding in report.failed:
        print(f"checkov FAILED {finding}", file=sys.stderr)
    for line in report.unexplained:
        print(f"checkov {line}", file=sys.stderr)
    print(
        f"checkov: {report.resources} resources, {report.passed} checks passed, "
        f"{len(report.failed)} failed, {len(report.skipped)} accepted with their reasons"
    )
    return 1 if report.failed or report.unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
