"""Deploy a synthesized TapStack onto the embedded AWS emulator, the way ``cdk deploy`` does.

``python -m govdr_emulator.deploy`` (``make deploy-local``): start the emulator on a free
localhost port, publish the file assets and nested templates of ``cdk.out`` to the emulator's
S3 as the CDK asset publisher would, create ``TapStack<suffix>`` from its template URL, wait
for it, write ``cfn-outputs/flat-outputs.json``, run the integration tests against it, and
print a summary. ``govdr preflight`` runs against the emulator first, as ``make deploy``
runs it against AWS: UNKNOWN where the emulator cannot answer, a FAIL stops the deploy.
``--keep`` leaves the emulator running for the AWS CLI or ``cdk deploy``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from govdr.aws import LOCAL_ENDPOINT_ACCESS, Aws
from govdr.config import REGION
from govdr.tools.outputs import DEFAULT_OUT, stack_outputs, write_flat
from govdr_emulator.server import HOST, free_port

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
BOOTSTRAP_VERSION = "30"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
STATE_FILE = ROOT / ".emulator.json"
EMULATOR_LOG = ROOT / ".emulator.log"

CANNOT = (
    "run Lambda functions or schedules: the rotation functions, the backup-vault cleaner and "
    "the transaction-log archiver are configured but never execute (the rotation, the archiver "
    "and the bootstrap are tested against a real PostgreSQL in tests/runtime); custom "
    "resources run as in-process equivalents",
    "run PostgreSQL: the instance exists as configuration, no connection can be made",
    "mount EFS into a Lambda function (FileSystemConfigs is not kept; checked by `make integ`)",
    "fail over or take backups: Multi-AZ, PITR and the backup plan exist as configuration; a "
    "point-in-time restore creates an instance record with no data (`govdr drill restore` runs "
    "its control flow here, unverified)",
    "enforce IAM, KMS key policies, TLS-only policies or security groups",
    "report Performance Insights or Database Insights settings of the instance",
)


class DeployError(RuntimeError):
    """The deployment failed; the message names the failing resource."""


@dataclass
class Emulator:
    """The emulator as a child process on ``http://localhost:PORT``."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def start(
        cls, port: int | None = None, *, detach: bool = False, timeout: float = 60
    ) -> Emulator:
        emulator = cls(port or free_port())
        with EMULATOR_LOG.open("wb") as log:
            emulator.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                [sys.executable, "-m", "govdr_emulator.server", "--port", str(emulator.port)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if emulator.process.poll() is not None:
                raise DeployError(f"the emulator exited with code {emulator.process.returncode}")
            if emulator.healthy():
                return emulator
            time.sleep(0.2)
        emulator.stop()
        raise DeployError(
            f"the emulator did not answer on {emulator.endpoint} within {timeout:.0f} s"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _substitute(text: str, account: str, region: str) -> str:
    return text.replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)


def _zip_directory(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(path.rglob("*")):
            if item.is_file():
                archive.write(item, item.relative_to(path))
    return buffer.getvalue()


def _assets_manifest(assembly: Path, stack_name: str) -> Path:
    manifest = assembly / f"{stack_name}.assets.json"
    if not manifest.is_file():
        raise DeployError(
            f"{manifest} not found: synthesize {stack_name} first (make synth SUFFIX=...)"
        )
    return manifest


def bootstrap(aws: Aws) -> None:
    """What `cdk bootstrap` leaves that the deploy reads: the bootstrap version parameter."""
    aws.client("ssm").put_parameter(
        Name=BOOTSTRAP_VERSION_PARAMETER, Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True
    )


def run_preflight(aws: Aws, assembly: Path, stack_name: str) -> dict[str, Any]:
    """`govdr preflight` against the emulator; prints its report. UNKNOWN is expected where
    the emulator does not answer; a FAIL stops the deploy (the caller checks the verdict)."""
    from govdr.preflight.command import PreflightError, aws_clients, render, run
    from govdr.preflight.plan import PlanError, load_plan

    _assets_manifest(assembly, stack_name)
    try:
        plan = load_plan(assembly, stack_name, aws.region)
        report = run(plan, aws_clients(plan.region, aws.endpoint))
    except (PlanError, PreflightError) as exc:
        raise DeployError(f"preflight could not run: {exc}") from None
    print(render(report), flush=True)
    return report


def preflight_and_publish(
    aws: Aws, assembly: Path, stack_name: str, seconds: dict[str, float]
) -> str:
    """Bootstrap, preflight (a FAIL stops here, before anything is published), publish."""
    bootstrap(aws)
    mark = time.monotonic()
    report = run_preflight(aws, assembly, stack_name)
    seconds["preflight"] = time.monotonic() - mark
    if report["verdict"] == "FAIL":
        raise DeployError("preflight failed: fix the FAIL lines above, then deploy again")
    mark = time.monotonic()
    url = publish_assets(aws, assembly, stack_name)
    seconds["publish assets"] = time.monotonic() - mark
    return url


def publish_assets(aws: Aws, assembly: Path, stack_name: str) -> str:
    """Upload every file asset of the stack; return the URL of the root template."""
    manifest = _assets_manifest(assembly, stack_name)
    account = aws.client("sts").get_caller_identity()["Account"]
    s3 = aws.client("s3")
    bootstrap(aws)
    buckets: set[str] = set()
    root_url = ""
    for asset in json.loads(manifest.read_text())["files"].values():
        source = assembly / asset["source"]["path"]
        body = (
            _zip_directory(source) if asset["source"]["packaging"] == "zip" else source.read_bytes()
        )
        for destination in asset["destinations"].values():
            bucket = _substitute(destination["bucketName"], account, aws.region)
            key = destination["objectKey"]
            if bucket not in buckets:
                existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
                if bucket not in existing:
                    s3.create_bucket(
                        Bucket=bucket,
                        CreateBucketConfiguration={"LocationConstraint": aws.region},
                    )
                buckets.add(bucket)
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            if asset["source"]["path"] == f"{stack_name}.template.json":
                root_url = f"https://s3.{aws.region}.amazonaws.com/{bucket}/{key}"
    if not root_url:
        raise DeployError(f"the asset manifest of {stack_name} does not list its template")
    return root_url


def _failure_reason(cfn: Any, stack_name: str) -> str:
    for stack in cfn.describe_stacks()["Stacks"]:
        if stack["StackStatus"] != "CREATE_FAILED":
            continue
        events = cfn.describe_stack_events(StackName=stack["StackId"])["StackEvents"]
        reasons = [
            e.get("ResourceStatusReason") for e in events if e["ResourceStatus"] == "CREATE_FAILED"
        ]
        if reasons and reasons[0]:
            return f"{stack['StackName']}: {reasons[0]}"
    return f"{stack_name} did not reach CREATE_COMPLETE"


def create_stack(
    aws: Aws, template_url: str, stack_name: str, timeout: float = 300
) -> dict[str, Any]:
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName=stack_name, TemplateURL=template_url, Capabilities=CAPABILITIES)
    deadline = time.monotonic() + timeout
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return dict(stack)
        if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
            raise DeployError(f"stack {stack_name} is {status}: {_failure_reason(cfn, stack_name)}")
        time.sleep(1)


def stack_resources(aws: Aws, stack_name: str) -> list[dict[str, str]]:
    """Every resource of the stack and of its nested stacks, depth first."""
    cfn = aws.client("cloudformation")
    found: list[dict[str, str]] = []
    for resource in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]:
        found.append(
            {
                "stack": stack_name,
                "logical_id": resource["LogicalResourceId"],
                "type": resource["ResourceType"],
                "physical_id": str(resource.get("PhysicalResourceId", "")),
            }
        )
        if resource["ResourceType"] == "AWS::CloudFormation::Stack":
            found.extend(stack_resources(aws, resource["PhysicalResourceId"]))
    return found


def delete_stack(aws: Aws, stack_name: str, timeout: float = 300) -> None:
    cfn = aws.client("cloudformation")
    cfn.delete_stack(StackName=stack_name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stacks = (
            cfn.describe_stacks(StackName=stack_name)["Stacks"] if _exists(cfn, stack_name) else []
        )
        if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
            return
        if stacks[0]["StackStatus"] == "DELETE_FAILED":
            raise DeployError(f"deleting {stack_name} failed: {stacks[0].get('StackStatusReason')}")
        time.sleep(1)
    raise DeployError(f"deleting {stack_name} did not finish within {timeout:.0f} s")


def _exists(cfn: Any, stack_name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        cfn.describe_stacks(StackName=stack_name)
        return True
    except ClientError:
        return False


def leftovers(aws: Aws, suffix: str) -> dict[str, list[str]]:
    """Resources of this deployment (by suffix) that still exist after teardown."""

    def named(values: list[str]) -> list[str]:
        return [v for v in values if suffix in v]

    ec2 = aws.client("ec2")
    kms = aws.client("kms")
    inventory = {
        "vpcs": named(
            [
                f"{v['VpcId']} {t['Value']}"
                for v in ec2.describe_vpcs()["Vpcs"]
                for t in v.get("Tags", [])
                if t["Key"] == "Name"
            ]
        ),
        "security groups": named(
            [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
        ),
        "kms keys (enabled)": [
            a["AliasName"]
            for a in kms.list_aliases()["Aliases"]
            if suffix in a["AliasName"]
            and a.get("TargetKeyId")
            and kms.describe_key(KeyId=a["TargetKeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
        ],
        "rds instances": named(
            [
                d["DBInstanceIdentifier"]
                for d in aws.client("rds").describe_db_instances()["DBInstances"]
            ]
        ),
        "secrets": named(
            [s["Name"] for s in aws.client("secretsmanager").list_secrets()["SecretList"]]
        ),
        "file systems": named(
            [
                str(f.get("Name", ""))
                for f in aws.client("efs").describe_file_systems()["FileSystems"]
            ]
        ),
        "sns topics": named([t["TopicArn"] for t in aws.client("sns").list_topics()["Topics"]]),
        "alarms": named(
            [a["AlarmName"] for a in aws.client("cloudwatch").describe_alarms()["MetricAlarms"]]
        ),
        "dashboards": named(
            [
                d["DashboardName"]
                for d in aws.client("cloudwatch").list_dashboards()["DashboardEntries"]
            ]
        ),
        "log groups": named(
            [g["logGroupName"] for g in aws.client("logs").describe_log_groups()["logGroups"]]
        ),
        "trails": named(
            [t["Name"] for t in aws.client("cloudtrail").describe_trails()["trailList"]]
        ),
        "backup vaults": named(
            [
                v["BackupVaultName"]
                for v in aws.client("backup").list_backup_vaults()["BackupVaultList"]
            ]
        ),
        "backup plans": named(
            [
                p["BackupPlanName"]
                for p in aws.client("backup").list_backup_plans()["BackupPlansList"]
            ]
        ),
        "iam roles": named([r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]]),
        "lambda functions": named(
            [f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]]
        ),
        "event rules": named([r["Name"] for r in aws.client("events").list_rules()["Rules"]]),
        "rds event subscriptions": named(
            [
                s["CustSubscriptionId"]
                for s in aws.client("rds").describe_event_subscriptions()["EventSubscriptionsList"]
            ]
        ),
        "rds parameter groups": named(
            [
                g["DBParameterGroupName"]
                for g in aws.client("rds").describe_db_parameter_groups()["DBParameterGroups"]
            ]
        ),
        "rds subnet groups": named(
            [
                g["DBSubnetGroupName"]
                for g in aws.client("rds").describe_db_subnet_groups()["DBSubnetGroups"]
            ]
        ),
        "iam policies": named(
            [p["PolicyName"] for p in aws.client("iam").list_policies(Scope="Local")["Policies"]]
        ),
        "s3 buckets": [
            b["Name"]
            for b in aws.client("s3").list_buckets().get("Buckets", [])
            if b["Name"].startswith(f"tapstack{suffix}-")
        ],
    }
    own_vpcs = [
        v["VpcId"]
        for v in ec2.describe_vpcs()["Vpcs"]
        if any(t["Key"] == "Name" and suffix in t["Value"] for t in v.get("Tags", []))
    ]
    inventory["flow logs"] = [
        f["FlowLogId"]
        for f in ec2.describe_flow_logs()["FlowLogs"]
        if f.get("ResourceId") in own_vpcs or suffix in str(f.get("LogGroupName", ""))
    ]
    if own_vpcs:
        scope = [{"Name": "vpc-id", "Values": own_vpcs}]
        inventory["subnets"] = [
            s["SubnetId"] for s in ec2.describe_subnets(Filters=scope)["Subnets"]
        ]
        inventory["vpc endpoints"] = [
            e["VpcEndpointId"] for e in ec2.describe_vpc_endpoints(Filters=scope)["VpcEndpoints"]
        ]
        inventory["network interfaces"] = [
            n["NetworkInterfaceId"]
            for n in ec2.describe_network_interfaces(Filters=scope)["NetworkInterfaces"]
        ]
    return {kind: items for kind, items in inventory.items() if items}


def run_integration_tests(endpoint: str | None, outputs: Path) -> tuple[int, str]:
    """Run tests/integration against the deployment; return (exit code, closing line)."""
    env = {**os.environ, "GOVDR_OUTPUTS": str(outputs)}
    if endpoint:
        env.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID=LOCAL_ENDPOINT_ACCESS["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=LOCAL_ENDPOINT_ACCESS["aws_secret_access_key"],
            AWS_DEFAULT_REGION=REGION,
            GOVDR_TARGET="emulator",
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/integration",
            "-q",
            "--no-cov",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, (lines[-1] if lines else result.stderr.strip()[-500:])


def summary(
    resources: list[dict[str, str]], outputs: dict[str, str], checks: str, seconds: dict[str, float]
) -> str:
    from govdr_emulator.custom_resources import CUSTOM_MODELS
    from govdr_emulator.fixes import FIXES

    by_type = Counter(r["type"] for r in resources)
    stacks = 1 + by_type["AWS::CloudFormation::Stack"]
    lines = [f"resources created: {len(resources)} in {stacks} stacks"]
    width = max(len(t) for t in by_type) if by_type else 0
    lines += [f"  {rtype:<{width}}  {count}" for rtype, count in sorted(by_type.items())]
    lines.append(f"outputs ({len(outputs)}):")
    lines += [f"  {k} = {v}" for k, v in sorted(outputs.items())]
    lines.append(
        f"integration checks: {checks} (deselected checks need a real AWS account: "
        "run `make integ` against one)"
    )
    lines.append(f"emulator fixes in use: {len(FIXES)} (govdr_emulator/fixes.py)")
    lines.append("run in-process instead of by Lambda (the emulator has no Docker):")
    lines += [f"  {name}: {model.EMULATED}" for name, model in sorted(CUSTOM_MODELS.items())]  # type: ignore[attr-defined]
    lines.append("the emulator cannot:")
    lines += [f"  - {item}" for item in CANNOT]
    lines.append("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return "\n".join(lines)


def teardown(aws: Aws, stack_name: str, suffix: str) -> dict[str, list[str]]:
    """Delete the stack and return what of it is left (empty when teardown is clean)."""
    delete_stack(aws, stack_name)
    return leftovers(aws, suffix)


def _kept_emulator(stack_name: str, suffix: str, state_file: Path, *, destroy: bool) -> int:
    if not state_file.is_file():
        print(
            "govdr: no kept emulator (start one with `make deploy-local KEEP=1`)", file=sys.stderr
        )
        return 2
    state = json.loads(state_file.read_text())
    if destroy:
        aws = Aws(state["endpoint"])
        try:
            left = teardown(aws, stack_name, suffix)
        except DeployError as exc:
            print(f"govdr: {exc}", file=sys.stderr)
            return 1
        if left:
            print(f"govdr: {stack_name} deleted, but these resources are left:", file=sys.stderr)
            for kind, items in left.items():
                print(f"  {kind}: {', '.join(items)}", file=sys.stderr)
            return 1
        print(
            f"{stack_name} deleted from {state['endpoint']}; nothing of it is left "
            "(its KMS keys are pending deletion, as on AWS)"
        )
        return 0
    import signal

    pid = state.get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    state_file.unlink()
    print(f"stopped the emulator on {state['endpoint']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m govdr_emulator.deploy",
        description="Deploy TapStack<suffix> from cdk.out onto the embedded AWS emulator.",
    )
    parser.add_argument("--suffix", default=os.environ.get("ENVIRONMENT_SUFFIX", "dev"))
    parser.add_argument("--assembly", type=Path, default=ROOT / "cdk.out")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the emulator running (stop it with `make emulator-stop`)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the integration tests")
    parser.add_argument(
        "--destroy",
        action="store_true",
        help="delete the stack from the emulator kept by --keep and list what is left",
    )
    parser.add_argument("--stop", action="store_true", help="stop the emulator kept by --keep")
    parser.add_argument("--outputs", type=Path, default=ROOT / DEFAULT_OUT, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, default=STATE_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stack_name = f"TapStack{args.suffix}"
    if args.destroy or args.stop:
        return _kept_emulator(stack_name, args.suffix, args.state, destroy=args.destroy)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    try:
        emulator = Emulator.start(args.port or None, detach=args.keep)
    except DeployError as exc:
        print(f"govdr: {exc}", file=sys.stderr)
        return 1
    seconds["emulator start"] = time.monotonic() - started
    keep_running = False
    try:
        aws = Aws(emulator.endpoint)
        url = preflight_and_publish(aws, args.assembly, stack_name, seconds)
        mark = time.monotonic()
        create_stack(aws, url, stack_name)
        seconds["create stack"] = time.monotonic() - mark
        outputs = stack_outputs(aws.client("cloudformation"), stack_name)
        out_path = write_flat(outputs, args.outputs)
        resources = stack_resources(aws, stack_name)
        checks = "skipped (--no-verify)"
        code = 0
        if not args.no_verify:
            mark = time.monotonic()
            code, checks = run_integration_tests(emulator.endpoint, out_path)
            seconds["integration tests"] = time.monotonic() - mark
        seconds["total"] = time.monotonic() - started
        print(summary(resources, outputs, checks, seconds))
        if args.keep:
            args.state.write_text(
                json.dumps(
                    {
                        "pid": emulator.process.pid if emulator.process else None,
                        "endpoint": emulator.endpoint,
                    }
                )
            )
            keep_running = True
            print(
                f"\nthe emulator keeps running on {emulator.endpoint} (pid "
                f"{emulator.process.pid if emulator.process else '?'}). Point tools at it with:\n"
                f"  export AWS_ENDPOINT_URL={emulator.endpoint} AWS_DEFAULT_REGION={REGION} "
                "AWS_ACCESS_KEY_ID=govdr-emulator AWS_SECRET_ACCESS_KEY=govdr-emulator\n"
                f"  aws cloudformation describe-stacks --stack-name {stack_name}\n"
                "Tear down with `make destroy-local`, stop with `make emulator-stop`."
            )
        return 0 if code == 0 else 1
    except DeployError as exc:
        print(f"govdr: deploy to the emulator failed: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError, ResponseParserError) as exc:
        print(
            f"govdr: the emulator rejected a request ({type(exc).__name__}: {str(exc)[:300]}); "
            f"its log is {EMULATOR_LOG.relative_to(ROOT)}",
            file=sys.stderr,
        )
        return 1
    finally:
        if not keep_running:
            emulator.stop()


if __name__ == "__main__":
    raise SystemExit(main())
