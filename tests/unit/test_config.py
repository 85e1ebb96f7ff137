"""Configuration: defaults, precedence, and one clear line for every invalid value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from govdr.config import KNOBS, ConfigError, DrConfig, load_config
from tests.conftest import ROOT


def load(context: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> DrConfig:
    ctx = context or {}
    return load_config(ctx.get, env or {})


def test_defaults_are_destroyable_and_in_eu_central_2() -> None:
    cfg = load()
    assert cfg.environment_suffix == "dev"
    assert cfg.region == "eu-central-2"
    assert cfg.availability_zones == ("eu-central-2a", "eu-central-2b", "eu-central-2c")
    assert cfg.production is False
    assert cfg.deletion_protection is False
    assert cfg.retain_data is False
    assert cfg.stack_name == "TapStackdev"
    assert cfg.engine_major == "18"


def test_context_wins_over_environment() -> None:
    cfg = load({"environmentSuffix": "pr42"}, {"ENVIRONMENT_SUFFIX": "fromenv"})
    assert cfg.environment_suffix == "pr42"
    assert load(env={"ENVIRONMENT_SUFFIX": "fromenv"}).environment_suffix == "fromenv"


def test_every_knob_reads_context_and_environment() -> None:
    values = {
        "environmentSuffix": "stage",
        "engineVersion": "17.4",
        "instanceClass": "db.r6i.2xlarge",
        "allocatedStorageGiB": "200",
        "maxAllocatedStorageGiB": "1000",
        "backupRetentionDays": "35",
        "production": "true",
        "deletionProtection": "false",
        "alarmEmail": "ops@example.gov",
        "vpcCidr": "172.20.0.0/20",
        "logRetentionDays": "731",
        "backupCopyVaultArn": "arn:aws:backup:eu-west-1:123456789012:backup-vault:govdr-copy",
        "cpuAlarmPercent": "70",
        "freeStorageAlarmGiB": "20",
        "freeableMemoryAlarmMiB": "1024",
        "connectionsAlarm": "800",
        "readLatencyAlarmMs": "15",
        "writeLatencyAlarmMs": "25",
        "diskQueueDepthAlarm": "32",
        "txlogDiskUsageAlarmGiB": "5",
        "replicationSlotLagAlarmMiB": "512",
        "slotWalKeepMiB": "30000",
        "txlogRetentionDays": "90",
        "efsIoLimitAlarmPercent": "80",
        "archiveLagAlarmSeconds": "120",
        "rpoAlarmSeconds": "600",
        "existingTrailArn": "arn:aws:cloudtrail:eu-central-2:123456789012:trail/org-trail",
        "outputPluginLibraries": "pgoutput, test_decoding, wal2json",
    }
    from_ctx = load(values)
    from_env = load(env={k.env_var: values[k.context_key] for k in KNOBS})
    assert from_ctx == from_env
    assert from_ctx.instance_class == "db.r6i.2xlarge"
    assert from_ctx.allocated_storage_gib == 200
    assert from_ctx.backup_retention_days == 35
    assert from_ctx.production is True
    # An explicit deletionProtection overrides what the prod switch implies.
    assert from_ctx.deletion_protection is False
    assert from_ctx.alarm_email == "ops@example.gov"
    assert from_ctx.log_retention_days == 731
    assert from_ctx.backup_copy_vault_arn is not None
    assert from_ctx.replication_slot_lag_alarm_mib == 512
    assert from_ctx.slot_wal_keep_limit_mib == 30000
    assert from_ctx.txlog_retention_limit_days == 90
    # Every knob was given a non-default value above, so each one is really read.
    assert all(
        getattr(from_ctx, k.field) != getattr(DrConfig(), k.field)
        for k in KNOBS
        if k.field != "deletion_protection"
    )


def test_production_switch_turns_on_protection() -> None:
    cfg = load({"production": True})
    assert cfg.deletion_protection is True
    assert cfg.retain_data is True


def test_empty_optional_values_mean_none() -> None:
    assert load({"alarmEmail": ""}).alarm_email is None
    assert load({"backupCopyVaultArn": ""}).backup_copy_vault_arn is None


@pytest.mark.parametrize(
    ("context", "needle"),
    [
        ({"environmentSuffix": "Dev"}, "environmentSuffix 'Dev'"),
        ({"environmentSuffix": "a_b"}, "single hyphens"),
        ({"environmentSuffix": "dev-"}, "not ending with a hyphen"),
        ({"environmentSuffix": "a--b"}, "single hyphens"),
        ({"environmentSuffix": "1dev"}, "start with a lowercase letter"),
        ({"environmentSuffix": "x" * 17}, "1-16 characters"),
        ({"environmentSuffix": ""}, "1-16 characters"),
        ({"engineVersion": "18."}, "major 13-18, alone (e.g. 18"),
        ({"engineVersion": "12.9"}, "major 13-18"),
        ({"engineVersion": "19"}, "major 13-18"),
        ({"engineVersion": "v18"}, "major 13-18"),
        ({"instanceClass": "m5.large"}, "db.<family>.<size>"),
        ({"instanceClass": "db.m5.huge"}, "db.<family>.<size>"),
        ({"allocatedStorageGiB": "10"}, "between 20 and 65536"),
        ({"allocatedStorageGiB": "lots"}, "whole number"),
        ({"allocatedStorageGiB": True}, "whole number"),
        ({"maxAllocatedStorageGiB": "50"}, "between allocatedStorageGiB (100)"),
        ({"backupRetentionDays": "6"}, "between 7 and 35"),
        ({"backupRetentionDays": "36"}, "between 7 and 35"),
        ({"production": "maybe"}, "true or false"),
        ({"alarmEmail": "not-an-email"}, "e-mail address"),
        ({"vpcCidr": "10.0.0.0/8"}, "between /16 and /24"),
        ({"vpcCidr": "10.0.0.0/25"}, "between /16 and /24"),
        ({"vpcCidr": "8.8.0.0/16"}, "private range"),
        ({"vpcCidr": "10.0.0.1/16"}, "no host bits"),
        ({"vpcCidr": "banana"}, "CIDR notation"),
        ({"logRetentionDays": "30"}, "at least one year"),
        ({"logRetentionDays": "366"}, "one of 365, 400"),
        ({"backupCopyVaultArn": "vault-1"}, "AWS Backup vault ARN"),
        (
            {"backupCopyVaultArn": "arn:aws:backup:eu-central-2:123456789012:backup-vault:x1"},
            "another region than eu-central-2",
        ),
        ({"cpuAlarmPercent": "101"}, "between 1 and 100 percent"),
        ({"connectionsAlarm": "0"}, "between 1 and 100000 connections"),
        ({"freeStorageAlarmGiB": "100"}, "below allocatedStorageGiB (100)"),
        ({"efsIoLimitAlarmPercent": "-5"}, "between 1 and 100 percent"),
        ({"slotWalKeepMiB": "1023"}, "between 1024 MiB and 50 % of allocatedStorageGiB"),
        ({"slotWalKeepMiB": "51201"}, "(51200 MiB): above, a stalled archive could take"),
        ({"slotWalKeepMiB": "-1"}, "between 1024 MiB"),
        ({"replicationSlotLagAlarmMiB": "10241"}, "at most half of the slot's WAL cap"),
        ({"txlogRetentionDays": "13"}, "from backupRetentionDays (14) to 3650 days"),
        ({"txlogRetentionDays": "3651"}, "from backupRetentionDays (14) to 3650 days"),
    ],
)
def test_invalid_values_name_value_rule_and_how_to_pass(
    context: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load(context)
    message = str(excinfo.value)
    key = next(iter(context))
    knob = next(k for k in KNOBS if k.context_key == key)
    assert needle in message
    assert f"-c {knob.context_key}=" in message
    assert knob.env_var in message
    assert "\n" not in message


def test_the_slot_cap_defaults_to_a_fifth_of_the_storage_and_bounds_its_alarm() -> None:
    assert DrConfig().slot_wal_keep_limit_mib == 20480  # 20 % of 100 GiB
    assert load({"allocatedStorageGiB": "20"}).slot_wal_keep_limit_mib == 4096
    # Edges: the cap's bounds, and an alarm at exactly half of it.
    assert load({"slotWalKeepMiB": "51200"}).slot_wal_keep_limit_mib == 51200
    assert load({"slotWalKeepMiB": "2048"}).slot_wal_keep_limit_mib == 2048
    with pytest.raises(ConfigError, match="replicationSlotLagAlarmMiB 1024: must be at most half"):
        load({"slotWalKeepMiB": "2047"})
    # The default cap follows the storage; the alarm must still fit under it.
    with pytest.raises(ConfigError, match="half of the slot's WAL cap slotWalKeepMiB \\(4096"):
        load({"allocatedStorageGiB": "20", "replicationSlotLagAlarmMiB": "2049"})


def test_valid_edge_values_are_accepted() -> None:
    assert load({"environmentSuffix": "a"}).environment_suffix == "a"
    assert load({"environmentSuffix": "pr-1234-x"}).environment_suffix == "pr-1234-x"
    assert load({"vpcCidr": "192.168.0.0/24"}).vpc_cidr == "192.168.0.0/24"
    assert load({"backupRetentionDays": 7}).backup_retention_days == 7
    assert load({"instanceClass": "db.t4g.medium"}).instance_class == "db.t4g.medium"
    assert load({"instanceClass": "db.x2iedn.metal"}).instance_class == "db.x2iedn.metal"


def test_config_is_frozen() -> None:
    cfg = load()
    with pytest.raises(AttributeError):
        cfg.environment_suffix = "other"  # type: ignore[misc]


def run_app(*context: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run app.py the way the CDK CLI does (context via CDK_CONTEXT_JSON)."""
    import json

    ctx = dict(c.split("=", 1) for c in context)
    full_env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(ctx), **(env or {})}
    full_env.pop("ENVIRONMENT_SUFFIX", None)
    return subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_app_rejects_bad_suffix_with_one_line_and_no_traceback() -> None:
    result = run_app("environmentSuffix=BAD_one")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "govdr: invalid environmentSuffix 'BAD_one': must start with a lowercase letter and "
        "contain only lowercase letters, digits and single hyphens, not ending with a hyphen "
        "(e.g. dev, pr1234, prod-eu); pass it with -c environmentSuffix=... or "
        "ENVIRONMENT_SUFFIX=..."
    ]
    assert "Traceback" not in result.stderr


def test_app_rejects_bad_retention_from_environment() -> None:
    result = run_app(env={"GOVDR_BACKUP_RETENTION_DAYS": "90"})
    assert result.returncode != 0
    assert "invalid backupRetentionDays 90: must be between 7 and 35" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_setting_has_exactly_one_knob() -> None:
    from dataclasses import fields

    assert sorted(k.field for k in KNOBS) == sorted(f.name for f in fields(DrConfig))
    assert len({k.context_key for k in KNOBS}) == len({k.env_var for k in KNOBS}) == len(KNOBS)


@pytest.mark.parametrize("value", ["pgoutput, test_decoding, wal2json", "wal2json", "a,wal2json"])
def test_output_plugin_lists_that_include_wal2json_are_accepted(value: str) -> None:
    assert DrConfig(output_plugin_libraries=value).output_plugin_libraries == value


@pytest.mark.parametrize(
    "value", ["pgoutput, test_decoding", "wal2json; DROP", "wal2json,,pgoutput", "Wal2json", ""]
)
def test_output_plugin_lists_without_wal2json_or_malformed_are_rejected(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DrConfig(output_plugin_libraries=value)
    message = str(caught.value)
    assert "invalid outputPluginLibraries" in message
    assert "includes wal2json, which the archiver decodes with" in message


PLANTED = "Planted: a finding that only the compliance gate reports"


def test_the_cli_entry_point_runs_the_compliance_gate(tmp_path: Path) -> None:
    """`cdk synth`, `make synth` and `make deploy` build through app.py: a gate finding must fail
    that synthesis too. One whole-synthesis check is planted in the gate of the child process;
    an app.py that did not attach the gate would synthesize without complaint."""
    import json

    from govdr.synth import cdk_json_context

    planted = (
        "import runpy\n"
        "import govdr.compliance.gate as gate\n"
        "from govdr.compliance.finding import Finding\n"
        "original = gate.synth_checks\n"
        "gate.synth_checks = lambda config: {**original(config), "
        f"'planted': lambda templates: [Finding(*{tuple(PLANTED.split(': ', 1))!r})]}}\n"
        "runpy.run_path('app.py', run_name='__main__')\n"
    )
    context = {**cdk_json_context(), "environmentSuffix": "gate1"}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    env.pop("ENVIRONMENT_SUFFIX", None)
    result = subprocess.run(
        [sys.executable, "-c", planted],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert PLANTED in result.stderr
    assert "govdr-planted" in result.stderr
    assert "ValidationFailed" in result.stderr


@pytest.mark.control("CP-9")
def test_the_archive_keeps_at_least_what_a_backup_can_restore_to() -> None:
    assert DrConfig().txlog_retention_limit_days == 14  # the backup retention
    assert load({"backupRetentionDays": "35"}).txlog_retention_limit_days == 35
    assert load({"txlogRetentionDays": "14"}).txlog_retention_limit_days == 14  # the edge
    # Twin: a longer backup retention makes the same archive retention too short.
    with pytest.raises(ConfigError, match="txlogRetentionDays 20: must be from backupRetention"):
        load({"backupRetentionDays": "21", "txlogRetentionDays": "20"})
