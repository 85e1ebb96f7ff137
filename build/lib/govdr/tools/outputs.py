"""Flatten a deployed stack's outputs into ``cfn-outputs/flat-outputs.json``.

Two sources: the file written by ``cdk deploy --outputs-file`` (``{stack: {key: value}}``),
or the stack itself through CloudFormation ``DescribeStacks``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("cfn-outputs/flat-outputs.json")


class OutputsError(RuntimeError):
    """The outputs could not be read; the message says why and what to do."""


def flatten_cdk_outputs(raw: dict[str, Any], stack_name: str) -> dict[str, str]:
    """Pick one stack's outputs from a ``cdk deploy --outputs-file`` document."""
    if stack_name not in raw:
        known = ", ".join(sorted(raw)) or "none"
        raise OutputsError(
            f"stack {stack_name} not in the outputs file (stacks there: {known}); "
            "pass the suffix the stack was deployed with (SUFFIX=... or ENVIRONMENT_SUFFIX)"
        )
    return {str(k): str(v) for k, v in raw[stack_name].items()}


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """Read the outputs of a deployed stack through a boto3 CloudFormation client."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise OutputsError(f"cannot describe stack {stack_name}: {exc}") from None
    status = stacks[0]["StackStatus"]
    if status not in {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"}:
        raise OutputsError(
            f"stack {stack_name} is {status}; outputs are only read from a stable stack"
        )
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def write_flat(outputs: dict[str, str], path: Path = DEFAULT_OUT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(outputs, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m govdr.tools.outputs",
        description="Write a deployed stack's outputs to cfn-outputs/flat-outputs.json.",
    )
    parser.add_argument("--stack", required=True, help="stack name, e.g. TapStackdev")
    parser.add_argument(
        "--from-file",
        type=Path,
        help="outputs file written by `cdk deploy --outputs-file`; without it, the stack is "
        "described through the AWS API (credentials and AWS_REGION from the environment)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        if args.from_file:
            try:
                raw = json.loads(args.from_file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise OutputsError(f"cannot read {args.from_file}: {exc}") from None
            outputs = flatten_cdk_outputs(raw, args.stack)
        else:
            import boto3
            from botocore.exceptions import BotoCoreError

            try:
                client = boto3.client("cloudformation")
            except BotoCoreError as exc:
                raise OutputsError(f"cannot reach CloudFormation: {exc}") from None
            outputs = stack_outputs(client, args.stack)
        path = write_flat(outputs, args.out)
    except OutputsError as exc:
        print(f"govdr: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(outputs)} outputs of {args.stack} to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
