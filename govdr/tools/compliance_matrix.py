"""``make compliance``: synthesize the default configuration with the gate attached and write
the FedRAMP Moderate control matrix (docs/compliance/fedramp-moderate.{md,json}) built by
:mod:`govdr.compliance.matrix`. Exit 1 when a control is failing."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from govdr.compliance.matrix import Templates, build_matrix, render_markdown
from govdr.config import DrConfig
from govdr.constructs.nag_notes import Ack
from govdr.synth import synthesize, templates


def synthesize_default(outdir: Path) -> tuple[DrConfig, Templates, list[Ack]]:
    """Synthesize the default configuration in-process, with the gate attached."""
    config = DrConfig()
    stack = synthesize(config, outdir)
    return config, templates(stack), stack.acknowledgments


def write(out_dir: Path, matrix: dict[str, Any]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "fedramp-moderate.md"
    js = out_dir / "fedramp-moderate.json"
    md.write_text(render_markdown(matrix))
    js.write_text(json.dumps(matrix, indent=2, sort_keys=True) + "\n")
    return [md, js]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m govdr.tools.compliance_matrix",
        description="Generate the FedRAMP Moderate control matrix (Markdown and JSON).",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/compliance"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config, templates, acks = synthesize_default(Path(tmp))
    matrix = build_matrix(config, templates, acks)
    for path in write(args.out, matrix):
        print(f"wrote {path}")
    failing = [c["id"] for c in matrix["controls"] if c["status"].startswith("failing")]
    if failing:
        print(f"govdr: controls failing: {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
