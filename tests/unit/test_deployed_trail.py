"""The integration tests' trail checks on both kinds of outputs: the environment's own trail
(TrailBucketName present) and an existing trail named with ``existingTrailArn`` (no Audit
stack, no TrailBucketName), against trails moto holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from govdr.aws import Aws
from govdr.config import REGION
from tests.integration import test_deployed as deployed
from tests.integration.conftest import Deployment

SUFFIX = "pr-7"
BASE_OUTPUTS = {
    "EnvironmentSuffix": SUFFIX,
    "DatabaseInstanceIdentifier": f"rds-{SUFFIX}",
    "DashboardName": f"dashboard-{SUFFIX}",
    "BackupVaultName": f"backup-vault-{SUFFIX}",
    "AlarmTopicArn": f"arn:aws:sns:{REGION}:123456789012:alarms-{SUFFIX}",
    "FlowLogGroupName": f"vpc-flow-logs-{SUFFIX}",
}


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        made = Aws()
        made.client("s3").create_bucket(
            Bucket="trail-logs", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield made


def _trail(aws: Aws, name: str, *, logging: bool = True, kms: str | None = None) -> str:
    cloudtrail = aws.client("cloudtrail")
    arn = str(
        cloudtrail.create_trail(
            Name=name,
            S3BucketName="trail-logs",
            IsMultiRegionTrail=True,
            EnableLogFileValidation=True,
            **({"KmsKeyId": kms} if kms else {}),
        )["TrailARN"]
    )
    if logging:
        cloudtrail.start_logging(Name=arn)
    return arn


def _existing(aws: Aws, arn: str) -> Deployment:
    return Deployment(aws, {**BASE_OUTPUTS, "TrailArn": arn, "AuditKeyArn": "unused"}, "emulator")


def test_existing_trail_outputs_check_the_named_trail(aws: Aws) -> None:
    """With existingTrailArn the outputs carry no TrailBucketName and a TrailArn without the
    suffix; the integration tests check that trail (logging, multi-region, validated) instead
    of reading TrailBucketName (a KeyError before)."""
    deployment = _existing(aws, _trail(aws, "org-trail"))
    deployed.test_names_carry_the_suffix(deployment)
    deployed.test_trail_is_logging_validated_and_encrypted(deployment)


def test_existing_trail_that_does_not_log_fails_the_integration_check(aws: Aws) -> None:
    deployment = _existing(aws, _trail(aws, "org-trail", logging=False))
    with pytest.raises(AssertionError, match="assert False is True"):  # IsLogging
        deployed.test_trail_is_logging_validated_and_encrypted(deployment)


def test_own_trail_outputs_still_compare_key_and_bucket(aws: Aws) -> None:
    key = str(aws.client("kms").create_key()["KeyMetadata"]["Arn"])
    arn = _trail(aws, f"trail-{SUFFIX}", kms=key)
    outputs = {**BASE_OUTPUTS, "TrailArn": arn, "TrailBucketName": "trail-logs"}
    deployed.test_names_carry_the_suffix(
        Deployment(aws, {**outputs, "AuditKeyArn": key}, "emulator")
    )
    deployed.test_trail_is_logging_validated_and_encrypted(
        Deployment(aws, {**outputs, "AuditKeyArn": key}, "emulator")
    )
    with pytest.raises(AssertionError):
        deployed.test_trail_is_logging_validated_and_encrypted(
            Deployment(aws, {**outputs, "AuditKeyArn": "arn:aws:kms:::key/other"}, "emulator")
        )
