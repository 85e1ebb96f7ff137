"""Audit nested stack (FedRAMP AU family): CloudTrail and VPC flow logs."""

from __future__ import annotations

from aws_cdk import NestedStack, RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from govdr.config import DrConfig
from govdr.constructs.log_group import encrypted_log_group
from govdr.naming import name


class AuditStack(NestedStack):
    """Trail with validated, encrypted log files; flow logs of all VPC traffic."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DrConfig,
        vpc: ec2.IVpc,
        logs_key: kms.IKey,
        audit_key: kms.IKey,
    ) -> None:
        super().__init__(scope, id_, description=f"govdr audit trail ({config.environment_suffix})")
        suffix = config.environment_suffix
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        # Buckets keep generated names: S3 names are global, and a fixed name would collide
        # across accounts. Teardown empties them unless the prod switch is on.
        auto_delete = not config.retain_data

        # S3 server access logs can only be delivered to a bucket with S3-managed encryption.
        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )
        self.trail_bucket = s3.Bucket(
            self,
            "TrailBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=audit_key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="trail-bucket/",
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )
        self.trail_log_group = encrypted_log_group(
            self,
            "TrailLogGroup",
            log_group_name=name("cloudtrail-logs", suffix),
            key=logs_key,
            config=config,
        )
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            trail_name=name("trail", suffix),
            bucket=self.trail_bucket,
            encryption_key=audit_key,
            enable_file_validation=True,
            include_global_service_events=True,
            is_multi_region_trail=True,
            management_events=cloudtrail.ReadWriteType.ALL,
            send_to_cloud_watch_logs=True,
            cloud_watch_log_group=self.trail_log_group,
        )

        self.flow_log_group = encrypted_log_group(
            self,
            "FlowLogGroup",
            log_group_name=name("vpc-flow-logs", suffix),
            key=logs_key,
            config=config,
        )
        flow_log_role = iam.Role(
            self,
            "FlowLogRole",
            role_name=name("vpc-flow-logs-role", suffix),
            description="VPC flow logs deliver records to their one log group",
            assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"),
        )
        self.flow_log = ec2.FlowLog(
            self,
            "FlowLog",
            flow_log_name=name("vpc-flow-log", suffix),
            resource_type=ec2.FlowLogResourceType.from_vpc(vpc),
            traffic_type=ec2.FlowLogTrafficType.ALL,
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                self.flow_log_group, flow_log_role
            ),
        )
