"""Fixes for the emulator's CloudFormation on the templates govdr synthesizes.

moto 5.2.5 skips some resource types and mishandles some properties of CDK templates. Each
fix below names the gap it closes; :func:`install` applies them all, once, in the process
that runs the emulator. Fixes only pass through what the template says or what a moto backend
computes; none invents a value the emulator could not know.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Props = dict[str, Any]


@dataclass(frozen=True)
class Fix:
    name: str
    gap: str


FIXES: list[Fix] = []
_installed = False


def _fix(name: str, gap: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(apply: Callable[[], None]) -> Callable[[], None]:
        FIXES.append(Fix(name, gap))
        _APPLIERS.append(apply)
        return apply

    return register


_APPLIERS: list[Callable[[], None]] = []


def _wrap_create(model: Any, prepare: Callable[[Props], None]) -> None:
    """Let ``prepare`` rewrite a resource's Properties before moto's own create runs."""
    original = model.create_from_cloudformation_json.__func__

    def create(
        cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any
    ) -> Any:
        prepare(cloudformation_json.setdefault("Properties", {}))
        return original(cls, resource_name, cloudformation_json, *args, **kwargs)

    model.create_from_cloudformation_json = classmethod(create)


def _after_create(model: Any, finish: Callable[[Any, Props, str, str], None]) -> None:
    """Let ``finish(resource, properties, account, region)`` complete moto's own create."""
    original = model.create_from_cloudformation_json.__func__

    def create(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        resource = original(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        finish(resource, cloudformation_json.get("Properties", {}), account_id, region_name)
        return resource

    model.create_from_cloudformation_json = classmethod(create)


def _cfn_tags_to(props: Props, key_name: str, value_name: str) -> None:
    tags = props.get("Tags")
    if isinstance(tags, list):
        props["Tags"] = [
            {key_name: t.get("Key", t.get(key_name)), value_name: t.get("Value", t.get(value_name))}
            for t in tags
        ]


@_fix(
    "kms-key-properties",
    "AWS::KMS::Key: Tags use Key/Value (moto expects TagKey/TagValue), KeyPolicy arrives as an "
    "object (moto stores it as-is, so GetKeyPolicy fails), and a deleted stack removes its keys "
    "at once instead of scheduling their deletion after PendingWindowInDays",
)
def _kms() -> None:
    from moto.kms.models import Key, kms_backends

    def prepare(props: Props) -> None:
        _cfn_tags_to(props, "TagKey", "TagValue")
        if isinstance(props.get("KeyPolicy"), dict):
            props["KeyPolicy"] = json.dumps(props["KeyPolicy"])

    _wrap_create(Key, prepare)

    def remember_window(key: Any, props: Props, account_id: str, region_name: str) -> None:
        key.govdr_pending_window = int(props.get("PendingWindowInDays", 30))

    _after_create(Key, remember_window)

    def schedule_deletion(self: Any, account_id: str, region_name: str) -> None:
        kms_backends[account_id][region_name].schedule_key_deletion(
            self.id, getattr(self, "govdr_pending_window", 30)
        )

    Key.delete = schedule_deletion  # type: ignore[method-assign]


def _register_models() -> None:
    """Add govdr's models to moto's model map (it only lists direct subclasses)."""
    from moto.cloudformation import parsing

    from govdr_emulator.custom_resources import CUSTOM_MODELS
    from govdr_emulator.models import MODELS

    original_list = parsing.get_model_list.__wrapped__
    parsing.get_model_list = functools.lru_cache(lambda: [*original_list(), *MODELS])
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()

    original_class = parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str) -> Any:
        if resource_type in CUSTOM_MODELS:
            return CUSTOM_MODELS[resource_type]
        return original_class(resource_type)

    parsing.resource_class_from_type = resource_class_from_type


def install() -> list[Fix]:
    """Apply every fix once; return the list for reports."""
    global _installed
    if not _installed:
        for apply in _APPLIERS:
            apply()
        _register_models()
        _installed = True
    return list(FIXES)


class ResourceCreateFailed(RuntimeError):
    """A resource of a stack could not be created; names the innermost failing resource."""

    def __init__(self, logical_id: str, resource_type: str, reason: str) -> None:
        super().__init__(f"{logical_id} ({resource_type}): {reason}")
        self.logical_id = logical_id
        self.resource_type = resource_type
        self.reason = reason


@_fix(
    "failed-create-reporting",
    "a resource that fails to create leaves the stack "
    "CREATE_IN_PROGRESS with no event, and DescribeStacks of a failed stack re-creates the "
    "resources its outputs name (an HTTP 500); now the stack is CREATE_FAILED, its event names "
    "the innermost failing resource and the reason, and the emulator's log says it too",
)
def _failures() -> None:
    from moto.cloudformation import parsing
    from moto.cloudformation.models import Stack

    original = parsing.parse_and_create_resource

    def create(logical_id: str, resource_json: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(logical_id, resource_json, *args, **kwargs)
        except ResourceCreateFailed:
            raise
        except Exception as exc:
            raise ResourceCreateFailed(
                logical_id, str(resource_json.get("Type")), f"{type(exc).__name__}: {exc}"
            ) from exc

    parsing.parse_and_create_resource = create

    create_resources = Stack.create_resources

    def create_resources_reporting(self: Any) -> None:
        try:
            create_resources(self)
        except ResourceCreateFailed as exc:
            print(f"govdr emulator: {self.name} CREATE_FAILED: {exc}", file=sys.stderr, flush=True)
            self.status = "CREATE_FAILED"
            self._add_stack_event("CREATE_FAILED", resource_status_reason=str(exc))
            self.failure = exc

    Stack.create_resources = create_resources_reporting

    # Outputs are resolved lazily: on a failed stack that would re-create the failed
    # resources on every DescribeStacks and answer 500 instead of the stack's status.
    resolve_outputs = Stack.outputs.fget

    def outputs(self: Any) -> list[Any]:
        if self.status == "CREATE_FAILED":
            return []
        return list(resolve_outputs(self))

    Stack.outputs = property(outputs)


@_fix(
    "nested-stack-outputs",
    "AWS::CloudFormation::Stack: Fn::GetAtt <nested>.Outputs.<name> "
    "is not implemented, and a failed nested stack does not fail its parent",
)
def _nested() -> None:
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
    from moto.cloudformation.models import Stack

    def get_cfn_attribute(self: Any, attribute_name: str) -> Any:
        if attribute_name.startswith("Outputs."):
            key = attribute_name.split(".", 1)[1]
            for output in self.output_map.values():
                if output and output.key == key:
                    return output.value
        raise UnformattedGetAttTemplateException()

    Stack.get_cfn_attribute = get_cfn_attribute

    def fail_with_child(stack: Any, props: Props, account_id: str, region_name: str) -> None:
        failure = getattr(stack, "failure", None)
        if stack.status == "CREATE_FAILED" and failure is not None:
            raise ResourceCreateFailed(failure.logical_id, failure.resource_type, failure.reason)

    _after_create(Stack, fail_with_child)


@_fix(
    "missing-resource-types",
    "CloudFormation skips Secrets Manager secrets, target "
    "attachments, resource policies and rotation schedules, CloudWatch alarms, SNS topic and "
    "S3 bucket policies, RDS event subscriptions, CloudTrail trails, security-group egress "
    "rules and AWS Backup vaults, plans and selections; each is created on its service's "
    "backend (govdr_emulator/models.py)",
)
def _models() -> None:
    from govdr_emulator import models

    assert models.MODELS


@_fix(
    "backup-selections-api",
    "AWS Backup has no selections: ListBackupSelections, "
    "GetBackupSelection and CreateBackupSelection are answered from the emulator's store",
)
def _selections() -> None:
    from govdr_emulator.backup_selections import install_api

    install_api()


@_fix(
    "rds-parameter-group-ref",
    "AWS::RDS::DBParameterGroup: Ref returns the moto object instead of the group's name",
)
def _rds_parameter_group() -> None:
    from moto.rds.models import DBParameterGroup

    DBParameterGroup.physical_resource_id = property(lambda self: self.name)  # type: ignore[assignment]


def _as_bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    return value if isinstance(value, bool) else str(value).lower() == "true"


@_fix(
    "rds-instance-properties",
    "AWS::RDS::DBInstance: VPCSecurityGroups, Port, "
    "DeletionProtection, EnableCloudwatchLogsExports, MaxAllocatedStorage, "
    "EnableIAMDatabaseAuthentication, MonitoringInterval/RoleArn and CACertificateIdentifier "
    "are dropped, and Port defaults to MySQL's 3306; every property the backend models is "
    "now passed through",
)
def _rds_instance() -> None:
    from moto.rds.models import DBInstance, rds_backends

    def create(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        p = cloudformation_json["Properties"]
        subnet_group = p.get("DBSubnetGroupName")
        db_kwargs = {
            "db_instance_identifier": str(p.get("DBInstanceIdentifier") or resource_name).lower(),
            "db_instance_class": p.get("DBInstanceClass"),
            "engine": p.get("Engine"),
            "engine_version": p.get("EngineVersion"),
            "port": int(p["Port"]) if p.get("Port") else None,
            "allocated_storage": int(p["AllocatedStorage"]) if p.get("AllocatedStorage") else None,
            "max_allocated_storage": p.get("MaxAllocatedStorage"),
            "backup_retention_period": int(p.get("BackupRetentionPeriod", 1)),
            "auto_minor_version_upgrade": _as_bool(p.get("AutoMinorVersionUpgrade"), True),
            "db_name": p.get("DBName"),
            "db_subnet_group_name": getattr(subnet_group, "name", subnet_group),
            "db_parameter_group_name": p.get("DBParameterGroupName"),
            "copy_tags_to_snapshot": _as_bool(p.get("CopyTagsToSnapshot")),
            "master_username": p.get("MasterUsername"),
            "master_user_password": p.get("MasterUserPassword"),
            "multi_az": _as_bool(p.get("MultiAZ")),
            "preferred_backup_window": p.get("PreferredBackupWindow", "13:14-13:44"),
            "preferred_maintenance_window": str(
                p.get("PreferredMaintenanceWindow", "wed:06:38-wed:07:08")
            ).lower(),
            "publicly_accessible": _as_bool(p.get("PubliclyAccessible")),
            "storage_type": p.get("StorageType"),
            "storage_encrypted": _as_bool(p.get("StorageEncrypted")),
            "kms_key_id": p.get("KmsKeyId"),
            "tags": p.get("Tags"),
            "vpc_security_group_ids": p.get("VPCSecurityGroups")
            or p.get("VpcSecurityGroupIds", []),
            "deletion_protection": _as_bool(p.get("DeletionProtection")),
            "enable_cloudwatch_logs_exports": p.get("EnableCloudwatchLogsExports"),
            "ca_certificate_identifier": p.get("CACertificateIdentifier", "rds-ca-default"),
            "monitoring_interval": int(p.get("MonitoringInterval", 0)),
            "monitoring_role_arn": p.get("MonitoringRoleArn"),
            "enable_iam_database_authentication": _as_bool(
                p.get("EnableIAMDatabaseAuthentication")
            ),
            "storage_throughput": p.get("StorageThroughput"),
        }
        if p.get("AvailabilityZone"):
            db_kwargs["availability_zone"] = p["AvailabilityZone"]
        return rds_backends[account_id][region_name].create_db_instance(db_kwargs)

    DBInstance.create_from_cloudformation_json = classmethod(create)  # type: ignore[assignment]


@_fix(
    "rds-instance-resource-id",
    "AWS::RDS::DBInstance: Fn::GetAtt DbiResourceId (the IAM database authentication "
    "policy's dbuser ARN) is not implemented",
)
def _rds_instance_resource_id() -> None:
    from moto.rds.models import DBInstance

    # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-rds-dbinstance.html#aws-resource-rds-dbinstance-return-values
    original_get = DBInstance.get_cfn_attribute
    original_has = DBInstance.has_cfn_attr.__func__  # type: ignore[attr-defined]

    def get_cfn_attribute(self: Any, attribute_name: str) -> Any:
        if attribute_name == "DbiResourceId":
            return self.dbi_resource_id  # what moto's backend gave the instance
        return original_get(self, attribute_name)

    DBInstance.get_cfn_attribute = get_cfn_attribute  # type: ignore[method-assign]
    DBInstance.has_cfn_attr = classmethod(  # type: ignore[method-assign,assignment]
        lambda cls, attr: attr == "DbiResourceId" or original_has(cls, attr)
    )


@_fix(
    "rds-parameter-group-name",
    "AWS::RDS::DBParameterGroup: DBParameterGroupName is ignored and a generated name used instead",
)
def _rds_parameter_group_name() -> None:
    from moto.rds.models import DBParameterGroup

    DBParameterGroup.cloudformation_name_type = staticmethod(lambda: "DBParameterGroupName")  # type: ignore[method-assign]


@_fix(
    "efs-file-system-policy",
    "AWS::EFS::FileSystem: FileSystemPolicy is ignored, so DescribeFileSystemPolicy finds none",
)
def _efs_policy() -> None:
    from moto.efs.models import FileSystem, efs_backends

    def put_policy(fs: Any, props: Props, account_id: str, region_name: str) -> None:
        if props.get("FileSystemPolicy") is not None:
            efs_backends[account_id][region_name].put_file_system_policy(
                fs.file_system_id, json.dumps(props["FileSystemPolicy"]), False
            )

    _after_create(FileSystem, put_policy)


@_fix(
    "efs-file-system-attributes",
    "AWS::EFS::FileSystem: Fn::GetAtt Arn and FileSystemId are not implemented",
)
def _efs_attributes() -> None:
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
    from moto.efs.models import FileSystem

    def get_cfn_attribute(self: Any, attribute_name: str) -> Any:
        if attribute_name == "Arn":
            return self.file_system_arn
        if attribute_name == "FileSystemId":
            return self.file_system_id
        raise UnformattedGetAttTemplateException()

    FileSystem.get_cfn_attribute = get_cfn_attribute
    FileSystem.has_cfn_attr = classmethod(lambda cls, attr: attr in ("Arn", "FileSystemId"))


@_fix(
    "efs-access-point-ref",
    "AWS::EFS::AccessPoint: Ref returns the moto object instead of the access point ID",
)
def _efs_access_point() -> None:
    from moto.efs.models import AccessPoint

    AccessPoint.physical_resource_id = property(lambda self: self.access_point_id)  # type: ignore[assignment]


@_fix(
    "ec2-network-teardown",
    "deleting a stack leaves its route tables and their subnet "
    "associations, VPC endpoints (and their network interfaces) and flow logs behind, so the "
    "VPC cannot be deleted; each is now deleted with its stack",
)
def _ec2_teardown() -> None:
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.flow_logs import FlowLogs
    from moto.ec2.models.route_tables import RouteTable
    from moto.ec2.models.subnets import SubnetRouteTableAssociation
    from moto.ec2.models.vpcs import VPCEndPoint

    def delete_association(self: Any, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        table = backend.route_tables.get(self.route_table_id)
        if table is None:
            return
        for association_id, subnet_id in list(table._associations.items()):
            if subnet_id == self.subnet_id:
                backend.disassociate_route_table(association_id)

    def delete_route_table(self: Any, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        if self.id in backend.route_tables:
            backend.delete_route_table(self.id)

    def delete_endpoint(self: Any, account_id: str, region_name: str) -> None:
        ec2_backends[account_id][region_name].delete_vpc_endpoints([self.id])

    def delete_flow_log(self: Any, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        if self.id in backend.flow_logs:
            backend.delete_flow_logs([self.id])

    SubnetRouteTableAssociation.delete = delete_association  # type: ignore[attr-defined]
    RouteTable.delete = delete_route_table  # type: ignore[attr-defined]
    VPCEndPoint.delete = delete_endpoint  # type: ignore[attr-defined]
    FlowLogs.delete = delete_flow_log  # type: ignore[attr-defined]


@_fix("iam-managed-policy-teardown", "AWS::IAM::ManagedPolicy is never deleted with its stack")
def _iam_policy_teardown() -> None:
    from moto.iam.models import ManagedPolicy, iam_backends

    def delete(self: Any, account_id: str, region_name: str) -> None:
        backend = iam_backends[account_id][self.partition]
        if self.arn in backend.managed_policies:
            backend.delete_policy(self.arn)

    ManagedPolicy.delete = delete  # type: ignore[attr-defined]


@_fix(
    "change-set-outputs",
    "ExecuteChangeSet (the path `cdk deploy` takes) creates the resources but keeps the "
    "outputs of the empty template the change set started from, so the stack has no outputs",
)
def _change_set_outputs() -> None:
    from moto.cloudformation.models import CloudFormationBackend

    original = CloudFormationBackend.execute_change_set

    def execute(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        original(self, change_set_name, stack_name)
        for stack in self.stacks.values():
            if stack.template and not stack.template_dict:
                stack._parse_template()
                stack.output_map = stack._create_output_map()

    CloudFormationBackend.execute_change_set = execute


# --- what `govdr preflight` asks the emulator (govdr/preflight/checks.py) ----------------------


@_fix(
    "ec2-region-opt-in",
    "DescribeRegions reports opt-in regions such as eu-central-2 as not-opted-in although the "
    "emulator serves every region; they are reported opted-in, as an enabled account would",
)
def _region_opt_in() -> None:
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend

    original = RegionsAndZonesBackend.describe_regions

    def describe_regions(self: Any, region_names: list[str] | None = None) -> list[Any]:
        regions = original(self, region_names)
        for region in regions:
            if region.opt_in_status == "not-opted-in":
                region.opt_in_status = "opted-in"
        return regions

    RegionsAndZonesBackend.describe_regions = describe_regions


@_fix(
    "ec2-endpoint-service-filters",
    "DescribeVpcEndpointServices with the filter service-name reads the filter's values from "
    "'Value' where the request carries 'Values', and fails with a KeyError (HTTP 500)",
)
def _endpoint_service_filters() -> None:
    from moto.ec2.models.vpcs import VPCBackend

    original = VPCBackend._filter_endpoint_services

    def filter_services(
        service_names: list[str], filters: list[dict[str, Any]], services: list[Any]
    ) -> list[Any]:
        fixed = [{**f, "Value": f.get("Value", f.get("Values", []))} for f in (filters or [])]
        return original(service_names, fixed, services)

    VPCBackend._filter_endpoint_services = staticmethod(filter_services)


@_fix(
    "rds-orderable-options-unknown",
    "DescribeOrderableDBInstanceOptions answers an empty list for every engine but "
    "aurora-postgresql and neptune, which reads as 'not orderable'; for those engines it now "
    "answers 'not implemented', so a client knows the emulator cannot tell",
)
def _orderable_unknown() -> None:
    from moto.rds.models import RDSBackend

    original = RDSBackend.describe_orderable_db_instance_options

    def describe(self: Any, engine: str, engine_version: str) -> list[dict[str, Any]]:
        if engine not in {"aurora-postgresql", "neptune"}:
            raise NotImplementedError(
                f"the emulator has no orderable instance options for {engine}"
            )
        return original(self, engine, engine_version)

    RDSBackend.describe_orderable_db_instance_options = describe
