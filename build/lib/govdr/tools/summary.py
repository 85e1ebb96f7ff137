"""Summarize a synthesized cloud assembly: stacks, resource counts by type, template paths."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TemplateSummary:
    path: Path
    resources: Counter[str]
    outputs: int
    transform: str | None


def summarize(outdir: Path) -> list[TemplateSummary]:
    """Read every ``*.template.json`` of a cloud assembly directory, root templates first."""
    if not (outdir / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{outdir} is not a cloud assembly (no manifest.json); run `make synth` first"
        )
    summaries = []
    for path in sorted(outdir.glob("*.template.json"), key=lambda p: ("nested" in p.name, p.name)):
        template = json.loads(path.read_text())
        transform = template.get("Transform")
        summaries.append(
            TemplateSummary(
                path=path,
                resources=Counter(r["Type"] for r in template.get("Resources", {}).values()),
                outputs=len(template.get("Outputs", {})),
                transform=",".join(transform) if isinstance(transform, list) else transform,
            )
        )
    return summaries


def render(summaries: list[TemplateSummary]) -> str:
    lines = []
    total: Counter[str] = Counter()
    for s in summaries:
        kind = "nested" if ".nested." in s.path.name else "root"
        extra = f", transform {s.transform}" if s.transform else ""
        lines.append(
            f"{kind:6} {s.path.name}: {sum(s.resources.values())} resources, "
            f"{s.outputs} outputs{extra}"
        )
        total.update(s.resources)
    lines.append("")
    lines.append(f"resources by type ({sum(total.values())} in all):")
    width = max((len(t) for t in total), default=0)
    for rtype, count in sorted(total.items()):
        lines.append(f"  {rtype:<{width}}  {count}")
    if summaries:
        lines.append("")
        lines.append(f"templates are in {summaries[0].path.parent.resolve()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m govdr.tools.summary",
        description="Print the stacks, resource counts by type and template paths of a synth.",
    )
    parser.add_argument("outdir", nargs="?", default="cdk.out", type=Path)
    args = parser.parse_args(argv)
    try:
        print(render(summarize(args.outdir)))
    except FileNotFoundError as exc:
        print(f"govdr: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
