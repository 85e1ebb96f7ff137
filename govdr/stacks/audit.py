"""Audit nested stack (FedRAMP AU family): CloudTrail, its buckets and log group.

VPC flow logs live in the Network stack beside the VPC they record.
"""

from __future__ import annotations

from aws_cdk import NestedStack, RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from govdr.config import DrConfig
from govdr.constructs import policy_notes
from govdr.constructs.log_group import encrypted_log_group
from govdr.constructs.nag_notes import accept_findings
from govdr.constructs.scanner_notes import accept_cdk_provider_handler, accept_check
from govdr.constructs.service_role import log_delivery_role
from govdr.naming import name
from govdr.stacks.settings import log_settings


class AuditStack(NestedStack):
    """Trail with validated, encrypted log files in S3 and CloudWatch Logs."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DrConfig,
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
        # https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerLogs.html
        accept_check(
            self.access_log_bucket,
            "CKV_AWS_18",
            "this is the access-log bucket the other buckets log into; logging it into itself "
            "would log its own log deliveries without end",
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
        accept_findings(
            self.access_log_bucket,
            ["NIST.800.53.R5-S3DefaultEncryptionKMS", "HIPAA.Security-S3DefaultEncryptionKMS"],
            "S3 delivers server access logs only to buckets with S3-managed encryption (SSE-S3); "
            "the bucket holds access records of the trail bucket, no citizen data",
        )
        for bucket in (self.trail_bucket, self.access_log_bucket):
            accept_findings(
                bucket,
                [
                    "NIST.800.53.R5-S3BucketReplicationEnabled",
                    "HIPAA.Security-S3BucketReplicationEnabled",
                ],
                "audit records are also delivered to CloudWatch Logs (CMK, >= 365 days); "
                "cross-region replication needs a bucket in another region, outside this "
                "single-region stack",
            )
        accept_cdk_provider_handler(self, "Custom::S3AutoDeleteObjectsCustomResourceProvider")
        if auto_delete:
            for bucket in (self.access_log_bucket, self.trail_bucket):
                assert bucket.policy is not None  # enforce_ssl writes the bucket policy
                policy_notes.accept(
                    bucket.policy,
                    action="s3:List*",
                    issue="RESOURCE_MISMATCH",
                    reason="CDK's autoDeleteObjects grant lets its custom-resource role list "
                    "the bucket it empties (s3:ListBucket, s3:ListBucketVersions) with "
                    "s3:List* on the bucket and its objects; the account-level List actions "
                    "that the wildcard also names take no bucket resource, so the statement "
                    "cannot grant them",
                )
        self.trail_log_group = encrypted_log_group(
            self,
            "TrailLogGroup",
            log_group_name=name("cloudtrail-logs", suffix),
            settings=log_settings(config, logs_key),
        )
        trail_logs_role = log_delivery_role(
            self,
            "TrailLogsRole",
            role_name=name("cloudtrail-logs-role", suffix),
            policy_name=name("cloudtrail-logs-policy", suffix),
            service="cloudtrail.amazonaws.com",
            log_group_arn=self.trail_log_group.log_group_arn,
            description="CloudTrail delivers events to its one log group",
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
            # The L2 would create its own role with an inline policy; ours is managed.
            send_to_cloud_watch_logs=False,
        )
        cfn_trail = self.trail.node.default_child
        assert isinstance(cfn_trail, cloudtrail.CfnTrail)
        cfn_trail.cloud_watch_logs_log_group_arn = self.trail_log_group.log_group_arn
        cfn_trail.cloud_watch_logs_role_arn = trail_logs_role.role.role_arn
