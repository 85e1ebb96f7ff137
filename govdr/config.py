"""The deployment configuration: the only module that reads CDK context and the environment.

Every knob has a context key (``cdk synth -c key=value``) and an environment variable; the
context wins. Invalid values raise :class:`ConfigError` with one line that names the value,
the rule and how to pass a valid one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from govdr.engine import SUPPORTED_MAJORS
from govdr.txlog import contract as txlog

REGION = "eu-central-2"
# The database RDS creates in the instance (the archived one, the drills' probes connect to).
DATABASE_NAME = "govdr"
AVAILABILITY_ZONES = ("eu-central-2a", "eu-central-2b", "eu-central-2c")

# RDS identifiers allow letters, digits and single hyphens, start with a letter and do not
# end with a hyphen; the suffix also ends up in S3-style lowercase names, so lowercase only.
_SUFFIX_RE = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-))*(?<!-)$")
SUFFIX_MAX_LEN = 16
_INSTANCE_CLASS_RE = re.compile(
    r"^db\.[a-z][a-z0-9-]*\.(?:micro|small|medium|(?:[0-9]*x)?large|metal(?:-[0-9]+xl)?)$"
)
# A major alone lets RDS apply minor upgrades with nothing in the template to contradict them;
# a MAJOR.MINOR pin turns automatic minor upgrades off (see DrConfig.pins_minor_version).
_ENGINE_RE = re.compile(r"^(?P<major>[0-9]{2})(?:\.(?P<minor>[0-9]{1,2}))?$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_PRIVATE_NETS = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_TRAIL_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:cloudtrail:[a-z]{2}(?:-[a-z]+)+-[0-9]:[0-9]{12}:trail/[A-Za-z0-9._-]{3,128}$"
)
# Logical-decoding output plugins, comma-separated (the form of PostgreSQL's list settings).
_PLUGIN_LIST_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}(?:\s*,\s*[a-z][a-z0-9_]{0,62})*$")
# The plugin the archiver decodes with; a restricting list without it stops the archive.
ARCHIVER_OUTPUT_PLUGIN = "wal2json"
_VAULT_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:backup:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]):[0-9]{12}:"
    r"backup-vault:[A-Za-z0-9_.-]{2,50}$"
)
# CloudWatch Logs accepts only these retention periods; FedRAMP AU-11 asks for >= 1 year.
LOG_RETENTION_DAYS = (365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
# Inclusive ranges of the alarm thresholds, with their unit for messages.
# The recovery objectives the platform is held to (REQUIREMENTS: RPO < 1 hour, RTO < 15 min).
RPO_OBJECTIVE_SECONDS = 3600
RTO_OBJECTIVE_SECONDS = 900
THRESHOLD_RANGES: dict[str, tuple[int, int, str]] = {
    "cpu_alarm_percent": (1, 100, "percent"),
    "free_storage_alarm_gib": (1, 65536, "GiB"),
    "freeable_memory_alarm_mib": (16, 1048576, "MiB"),
    "connections_alarm": (1, 100000, "connections"),
    "read_latency_alarm_ms": (1, 60000, "ms"),
    "write_latency_alarm_ms": (1, 60000, "ms"),
    "disk_queue_depth_alarm": (1, 100000, "requests"),
    "txlog_disk_usage_alarm_gib": (1, 65536, "GiB"),
    "replication_slot_lag_alarm_mib": (1, 1048576, "MiB"),
    "efs_io_limit_alarm_percent": (1, 100, "percent"),
    # Both must leave room below the 60-minute recovery point objective.
    "archive_lag_alarm_seconds": (60, RPO_OBJECTIVE_SECONDS - 60, "seconds"),
    "rpo_alarm_seconds": (60, RPO_OBJECTIVE_SECONDS - 60, "seconds"),
}
# The default cap on the WAL the archiver's slot keeps, in percent of the allocated storage,
# and the largest cap allowed (docs/architecture.md, "Replication slot cap").
SLOT_WAL_KEEP_SHARE_PERCENT = 20
SLOT_WAL_KEEP_MAX_PERCENT = 50
# The smallest cap: 64 WAL segments of 16 MiB, so one busy checkpoint cycle cannot invalidate it.
SLOT_WAL_KEEP_MIN_MIB = 1024
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration value was rejected; the message is meant for the operator."""


@dataclass(frozen=True, kw_only=True)
class DrConfig:
    """Validated settings of one deployment of the DR platform."""

    environment_suffix: str = "dev"
    engine_version: str = "18"
    instance_class: str = "db.m7g.large"
    allocated_storage_gib: int = 100
    max_allocated_storage_gib: int = 500
    backup_retention_days: int = 14
    production: bool = False
    deletion_protection: bool | None = None
    alarm_email: str | None = None
    vpc_cidr: str = "10.40.0.0/16"
    log_retention_days: int = 365
    backup_copy_vault_arn: str | None = None
    # An existing (e.g. organization) multi-region trail that already records this account:
    # no trail of our own then. An account holds at most 5 trails per region, so pull-request
    # environments that each create one run out (and each copy bills data events again).
    existing_trail_arn: str | None = None
    # output_plugin_libraries of the parameter group, for engine minors that have the setting:
    # they let a non-superuser replication login (the archiver's) decode only with the listed
    # plugins. Unset: the parameter is left out (a family without it rejects it).
    output_plugin_libraries: str | None = None
    # Alarm thresholds (docs/architecture.md explains each default).
    cpu_alarm_percent: int = 80
    free_storage_alarm_gib: int = 10
    freeable_memory_alarm_mib: int = 512
    connections_alarm: int = 400
    read_latency_alarm_ms: int = 20
    write_latency_alarm_ms: int = 20
    disk_queue_depth_alarm: int = 64
    txlog_disk_usage_alarm_gib: int = 10
    replication_slot_lag_alarm_mib: int = 1024
    # max_slot_wal_keep_size of the parameter group: the most WAL the archiver's slot may keep
    # on the instance's storage before PostgreSQL invalidates the slot (the archive then records
    # a gap and starts a new slot) instead of filling the storage. Unset: a fifth of the
    # allocated storage (SLOT_WAL_KEEP_SHARE; docs/architecture.md gives the reasoning).
    slot_wal_keep_mib: int | None = None
    # Days of transaction-log archive kept on EFS: older segments are pruned by the archiver.
    # Unset: backupRetentionDays, the oldest point any backup can restore to (a restore needs
    # the archive only from its restore point on). Never below it.
    txlog_retention_days: int | None = None
    efs_io_limit_alarm_percent: int = 90
    archive_lag_alarm_seconds: int = 300
    rpo_alarm_seconds: int = 900

    def __post_init__(self) -> None:
        _validate(self)
        if self.deletion_protection is None:
            # The prod switch turns deletion protection on unless it was set explicitly.
            object.__setattr__(self, "deletion_protection", self.production)

    @property
    def region(self) -> str:
        return REGION

    @property
    def availability_zones(self) -> tuple[str, ...]:
        return AVAILABILITY_ZONES

    @property
    def engine_major(self) -> str:
        return self.engine_version.split(".", 1)[0]

    @property
    def pins_minor_version(self) -> bool:
        """Whether a minor version is pinned. RDS's automatic minor upgrades are then off:
        after one, the template's older minor would ask CloudFormation for a downgrade
        (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_UpgradeDBInstance.Upgrading.html).
        """
        return "." in self.engine_version

    @property
    def slot_wal_keep_limit_mib(self) -> int:
        """``max_slot_wal_keep_size`` (MiB): the knob, or a fifth of the allocated storage."""
        if self.slot_wal_keep_mib is not None:
            return self.slot_wal_keep_mib
        return self.allocated_storage_gib * 1024 * SLOT_WAL_KEEP_SHARE_PERCENT // 100

    @property
    def txlog_retention_limit_days(self) -> int:
        """Days the archive keeps: the knob, or the backup retention."""
        if self.txlog_retention_days is not None:
            return self.txlog_retention_days
        return self.backup_retention_days

    @property
    def creates_trail(self) -> bool:
        """Whether the environment creates its own trail (no existing trail given)."""
        return self.existing_trail_arn is None

    @property
    def stack_name(self) -> str:
        return f"TapStack{self.environment_suffix}"

    @property
    def retain_data(self) -> bool:
        """Whether stateful resources outlive the stack (the prod switch)."""
        return self.production


@dataclass(frozen=True)
class _Knob:
    field: str
    context_key: str
    env_var: str
    kind: type


KNOBS: tuple[_Knob, ...] = (
    _Knob("environment_suffix", "environmentSuffix", "ENVIRONMENT_SUFFIX", str),
    _Knob("engine_version", "engineVersion", "GOVDR_ENGINE_VERSION", str),
    _Knob("instance_class", "instanceClass", "GOVDR_INSTANCE_CLASS", str),
    _Knob("allocated_storage_gib", "allocatedStorageGiB", "GOVDR_ALLOCATED_STORAGE_GIB", int),
    _Knob(
        "max_allocated_storage_gib",
        "maxAllocatedStorageGiB",
        "GOVDR_MAX_ALLOCATED_STORAGE_GIB",
        int,
    ),
    _Knob("backup_retention_days", "backupRetentionDays", "GOVDR_BACKUP_RETENTION_DAYS", int),
    _Knob("production", "production", "GOVDR_PRODUCTION", bool),
    _Knob("deletion_protection", "deletionProtection", "GOVDR_DELETION_PROTECTION", bool),
    _Knob("alarm_email", "alarmEmail", "GOVDR_ALARM_EMAIL", str),
    _Knob("vpc_cidr", "vpcCidr", "GOVDR_VPC_CIDR", str),
    _Knob("log_retention_days", "logRetentionDays", "GOVDR_LOG_RETENTION_DAYS", int),
    _Knob("backup_copy_vault_arn", "backupCopyVaultArn", "GOVDR_BACKUP_COPY_VAULT_ARN", str),
    _Knob("existing_trail_arn", "existingTrailArn", "GOVDR_EXISTING_TRAIL_ARN", str),
    _Knob(
        "output_plugin_libraries",
        "outputPluginLibraries",
        "GOVDR_OUTPUT_PLUGIN_LIBRARIES",
        str,
    ),
    _Knob("cpu_alarm_percent", "cpuAlarmPercent", "GOVDR_CPU_ALARM_PERCENT", int),
    _Knob("free_storage_alarm_gib", "freeStorageAlarmGiB", "GOVDR_FREE_STORAGE_ALARM_GIB", int),
    _Knob(
        "freeable_memory_alarm_mib",
        "freeableMemoryAlarmMiB",
        "GOVDR_FREEABLE_MEMORY_ALARM_MIB",
        int,
    ),
    _Knob("connections_alarm", "connectionsAlarm", "GOVDR_CONNECTIONS_ALARM", int),
    _Knob("read_latency_alarm_ms", "readLatencyAlarmMs", "GOVDR_READ_LATENCY_ALARM_MS", int),
    _Knob("write_latency_alarm_ms", "writeLatencyAlarmMs", "GOVDR_WRITE_LATENCY_ALARM_MS", int),
    _Knob("disk_queue_depth_alarm", "diskQueueDepthAlarm", "GOVDR_DISK_QUEUE_DEPTH_ALARM", int),
    _Knob(
        "txlog_disk_usage_alarm_gib",
        "txlogDiskUsageAlarmGiB",
        "GOVDR_TXLOG_DISK_USAGE_ALARM_GIB",
        int,
    ),
    _Knob(
        "replication_slot_lag_alarm_mib",
        "replicationSlotLagAlarmMiB",
        "GOVDR_REPLICATION_SLOT_LAG_ALARM_MIB",
        int,
    ),
    _Knob("slot_wal_keep_mib", "slotWalKeepMiB", "GOVDR_SLOT_WAL_KEEP_MIB", int),
    _Knob("txlog_retention_days", "txlogRetentionDays", "GOVDR_TXLOG_RETENTION_DAYS", int),
    _Knob(
        "efs_io_limit_alarm_percent",
        "efsIoLimitAlarmPercent",
        "GOVDR_EFS_IO_LIMIT_ALARM_PERCENT",
        int,
    ),
    _Knob(
        "archive_lag_alarm_seconds",
        "archiveLagAlarmSeconds",
        "GOVDR_ARCHIVE_LAG_ALARM_SECONDS",
        int,
    ),
    _Knob("rpo_alarm_seconds", "rpoAlarmSeconds", "GOVDR_RPO_ALARM_SECONDS", int),
)
_BY_FIELD = {k.field: k for k in KNOBS}


def how_to_pass(field: str) -> str:
    knob = _BY_FIELD[field]
    return f"pass it with -c {knob.context_key}=... or {knob.env_var}=..."


def _fail(field: str, value: object, rule: str) -> ConfigError:
    knob = _BY_FIELD[field]
    return ConfigError(f"invalid {knob.context_key} {value!r}: {rule}; {how_to_pass(field)}")


def _validate(cfg: DrConfig) -> None:
    """Every knob against its rule, in the order of the knobs' table; the first wrong one
    raises ConfigError."""
    _validate_names(cfg)
    _validate_storage(cfg)
    _validate_integrations(cfg)
    _validate_thresholds(cfg)


def _validate_names(cfg: DrConfig) -> None:
    """The suffix, the engine version and the instance class."""
    suffix = cfg.environment_suffix
    if not isinstance(suffix, str) or not (1 <= len(suffix) <= SUFFIX_MAX_LEN):
        raise _fail(
            "environment_suffix",
            suffix,
            f"must be 1-{SUFFIX_MAX_LEN} characters long",
        )
    if not _SUFFIX_RE.match(suffix):
        raise _fail(
            "environment_suffix",
            suffix,
            "must start with a lowercase letter and contain only lowercase letters, digits "
            "and single hyphens, not ending with a hyphen (e.g. dev, pr1234, prod-eu)",
        )

    engine = _ENGINE_RE.match(cfg.engine_version)
    if not engine or int(engine["major"]) not in SUPPORTED_MAJORS:
        raise _fail(
            "engine_version",
            cfg.engine_version,
            f"must be an RDS for PostgreSQL major {SUPPORTED_MAJORS[0]}-{SUPPORTED_MAJORS[-1]}, "
            "alone (e.g. 18: RDS applies minor upgrades) or with a pinned minor (e.g. 18.6: "
            "automatic minor upgrades off)",
        )

    if not _INSTANCE_CLASS_RE.match(cfg.instance_class):
        raise _fail(
            "instance_class",
            cfg.instance_class,
            "must be an RDS instance class db.<family>.<size> "
            "(e.g. db.m7g.large, db.r6i.2xlarge, db.t4g.medium)",
        )


def _validate_storage(cfg: DrConfig) -> None:
    """Storage and backup retention."""
    if not 20 <= cfg.allocated_storage_gib <= 65536:
        raise _fail(
            "allocated_storage_gib",
            cfg.allocated_storage_gib,
            "must be between 20 and 65536 GiB (gp3)",
        )
    if not cfg.allocated_storage_gib <= cfg.max_allocated_storage_gib <= 65536:
        raise _fail(
            "max_allocated_storage_gib",
            cfg.max_allocated_storage_gib,
            f"must be between allocatedStorageGiB ({cfg.allocated_storage_gib}) and 65536 GiB",
        )

    if not 7 <= cfg.backup_retention_days <= 35:
        raise _fail(
            "backup_retention_days",
            cfg.backup_retention_days,
            "must be between 7 and 35 days (RDS maximum 35; below 7 breaks the recovery window)",
        )


def _validate_integrations(cfg: DrConfig) -> None:
    """What the platform connects to: alarm e-mail, network, logs, copy vault, trail, plugins."""
    if cfg.alarm_email is not None and not _EMAIL_RE.match(cfg.alarm_email):
        raise _fail(
            "alarm_email", cfg.alarm_email, "must be an e-mail address like ops@example.gov"
        )

    _validate_cidr(cfg.vpc_cidr)

    if cfg.log_retention_days not in LOG_RETENTION_DAYS:
        allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS)
        raise _fail(
            "log_retention_days",
            cfg.log_retention_days,
            f"must be a CloudWatch Logs retention of at least one year: one of {allowed}",
        )

    if cfg.backup_copy_vault_arn is not None:
        match = _VAULT_ARN_RE.match(cfg.backup_copy_vault_arn)
        if not match:
            raise _fail(
                "backup_copy_vault_arn",
                cfg.backup_copy_vault_arn,
                "must be an AWS Backup vault ARN "
                "(arn:aws:backup:<region>:<account>:backup-vault:<name>)",
            )
        if match.group("region") == REGION:
            raise _fail(
                "backup_copy_vault_arn",
                cfg.backup_copy_vault_arn,
                f"must be in another region than {REGION} (a copy in the same region "
                "does not survive a regional outage)",
            )

    if cfg.existing_trail_arn is not None and not _TRAIL_ARN_RE.match(cfg.existing_trail_arn):
        raise _fail(
            "existing_trail_arn",
            cfg.existing_trail_arn,
            "must be a CloudTrail trail ARN (arn:aws:cloudtrail:<region>:<account>:trail/<name>), "
            "or empty to create the environment's own trail",
        )

    plugins = cfg.output_plugin_libraries
    if plugins is not None:
        listed = [p.strip() for p in plugins.split(",")] if _PLUGIN_LIST_RE.match(plugins) else []
        if ARCHIVER_OUTPUT_PLUGIN not in listed:
            raise _fail(
                "output_plugin_libraries",
                plugins,
                "must be a comma-separated list of output plugin names that includes "
                f"{ARCHIVER_OUTPUT_PLUGIN}, which the archiver decodes with, e.g. "
                f"'pgoutput, test_decoding, {ARCHIVER_OUTPUT_PLUGIN}'; or empty to leave the "
                "parameter out",
            )


def _validate_thresholds(cfg: DrConfig) -> None:
    """Alarm thresholds, the slot's WAL cap and the archive's retention."""
    for field, (low, high, unit) in THRESHOLD_RANGES.items():
        value = getattr(cfg, field)
        if not low <= value <= high:
            raise _fail(field, value, f"must be between {low} and {high} {unit}")
    if cfg.free_storage_alarm_gib >= cfg.allocated_storage_gib:
        raise _fail(
            "free_storage_alarm_gib",
            cfg.free_storage_alarm_gib,
            f"must be below allocatedStorageGiB ({cfg.allocated_storage_gib})",
        )
    _validate_slot_cap(cfg)
    retention = cfg.txlog_retention_days
    longest = txlog.MAX_RETENTION_DAYS
    if retention is not None and not cfg.backup_retention_days <= retention <= longest:
        raise _fail(
            "txlog_retention_days",
            retention,
            f"must be from backupRetentionDays ({cfg.backup_retention_days}) to {longest} days: a "
            "shorter archive would be pruned while a backup can still restore to a point it "
            "covers; or leave it unset for the backup retention",
        )


def _validate_slot_cap(cfg: DrConfig) -> None:
    """The slot's WAL cap leaves the storage to the database, and its alarm fires in time."""
    storage_mib = cfg.allocated_storage_gib * 1024
    highest = storage_mib * SLOT_WAL_KEEP_MAX_PERCENT // 100
    cap = cfg.slot_wal_keep_limit_mib
    if cfg.slot_wal_keep_mib is not None and not SLOT_WAL_KEEP_MIN_MIB <= cap <= highest:
        raise _fail(
            "slot_wal_keep_mib",
            cap,
            f"must be between {SLOT_WAL_KEEP_MIN_MIB} MiB and {SLOT_WAL_KEEP_MAX_PERCENT} % of "
            f"allocatedStorageGiB ({highest} MiB): above, a stalled archive could take the "
            "storage the database needs to accept writes; or leave it unset for "
            f"{SLOT_WAL_KEEP_SHARE_PERCENT} % of the storage",
        )
    if cfg.replication_slot_lag_alarm_mib * 2 > cap:
        raise _fail(
            "replication_slot_lag_alarm_mib",
            cfg.replication_slot_lag_alarm_mib,
            f"must be at most half of the slot's WAL cap slotWalKeepMiB ({cap} MiB), so the "
            "alarm fires while the archive can still catch up before PostgreSQL invalidates "
            "its slot",
        )


def _validate_cidr(cidr: str) -> None:
    try:
        net = ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        raise _fail(
            "vpc_cidr", cidr, "must be an IPv4 network in CIDR notation with no host bits set"
        ) from None
    if not 16 <= net.prefixlen <= 24:
        raise _fail("vpc_cidr", cidr, "prefix length must be between /16 and /24")
    if not any(net.subnet_of(p) for p in _PRIVATE_NETS):
        raise _fail(
            "vpc_cidr",
            cidr,
            "must lie in a private range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)",
        )


def _coerce(knob: _Knob, raw: Any) -> Any:
    if knob.kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _fail(knob.field, raw, "must be true or false")
    if knob.kind is int:
        if isinstance(raw, bool):
            raise _fail(knob.field, raw, "must be a whole number")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise _fail(knob.field, raw, "must be a whole number") from None
    return str(raw).strip()


def load_config(get_context: Callable[[str], Any], environ: Mapping[str, str]) -> DrConfig:
    """Build the config from CDK context (``get_context``) and the environment.

    Context wins over the environment; unset knobs keep their defaults. An empty
    ``alarmEmail`` means no subscription.
    """
    values: dict[str, Any] = {}
    for knob in KNOBS:
        raw = get_context(knob.context_key)
        if raw is None:
            raw = environ.get(knob.env_var)
        if raw is None:
            continue
        value = _coerce(knob, raw)
        if knob.field in {
            "alarm_email",
            "backup_copy_vault_arn",
            "existing_trail_arn",
            "output_plugin_libraries",
        } and (value == ""):
            continue
        values[knob.field] = value
    return DrConfig(**values)
