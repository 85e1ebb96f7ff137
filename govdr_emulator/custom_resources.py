"""The custom resources of govdr's templates, run inside the emulator.

Their Lambda functions cannot run here (the emulator has no Docker), so each custom resource
type performs the same effect directly on the emulator's backends. The summary of a local
deploy says so.
"""

from __future__ import annotations

import json

from govdr_emulator.models import Props, _Model


class RestrictDefaultSecurityGroup(_Model):
    """Custom::VpcRestrictDefaultSG: remove every rule of the VPC's default security group."""

    CFN_TYPE = "Custom::VpcRestrictDefaultSG"
    EMULATED = "CDK's Lambda would revoke the default security group's rules; done in-process"

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> RestrictDefaultSecurityGroup:
        from moto.ec2.models import ec2_backends

        group_id = props["DefaultSecurityGroupId"]
        backend = ec2_backends[account_id][region_name]
        group = backend.get_security_group_from_id(group_id)
        for rule in list(group.ingress_rules):
            group.ingress_rules.remove(rule)
        for rule in list(group.egress_rules):
            group.egress_rules.remove(rule)
        return cls(f"restrict-{group_id}")


class AutoDeleteObjects(_Model):
    """Custom::S3AutoDeleteObjects: empty the bucket (every version) when the stack is deleted."""

    CFN_TYPE = "Custom::S3AutoDeleteObjects"
    EMULATED = "CDK's Lambda would empty the bucket on delete; done in-process"

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> AutoDeleteObjects:
        return cls(str(props["BucketName"]))

    @classmethod
    def delete_resource(cls, resource_name: str, account_id: str, region_name: str) -> None:
        from moto.s3.models import s3_backends

        backend = s3_backends[account_id]["global"]
        bucket = backend.buckets.get(resource_name)
        if bucket is None:
            return
        for key in list(bucket.keys.iterlists()):
            for version in key[1]:
                backend.delete_object(resource_name, version.name, version_id=version.version_id)
            backend.delete_object(resource_name, key[0])


class BackupVaultCleaner(_Model):
    """Custom::BackupVaultCleaner: on delete, the vault must hold no recovery points.

    The emulator's AWS Backup never creates recovery points, so there is nothing to delete;
    the real function's logic is tested in tests/runtime against AWS Backup's API model.
    """

    CFN_TYPE = "Custom::BackupVaultCleaner"
    EMULATED = (
        "CDK's custom-resource framework and govdr's cleaner Lambda cannot run; the emulator's "
        "vaults never hold recovery points"
    )

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> BackupVaultCleaner:
        vault = props["BackupVaultName"]
        return cls(f"empty-on-delete:{vault}")


class TxlogBootstrap(_Model):
    """Custom::TxlogBootstrap: the function's first step, reading both secrets, is done here.

    The emulator's RDS runs no PostgreSQL, so no user or slot can be created; the function
    itself is tested against a real PostgreSQL in tests/runtime/test_txlog_bootstrap.py.
    """

    CFN_TYPE = "Custom::TxlogBootstrap"
    EMULATED = (
        "CDK's custom-resource framework and govdr's bootstrap Lambda cannot run and the "
        "emulator's RDS has no PostgreSQL; both secrets are read in-process, no replication "
        "user or slot is created"
    )

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> TxlogBootstrap:
        from moto.secretsmanager.models import secretsmanager_backends

        backend = secretsmanager_backends[account_id][region_name]
        replication = backend.get_secret_value(props["ReplicationSecretArn"], None, None)
        backend.get_secret_value(props["MasterSecretArn"], None, None)
        username = json.loads(replication["SecretString"])["username"]
        return cls(f"txlog-bootstrap:{username}")


CUSTOM_MODELS: dict[str, type[_Model]] = {
    m.CFN_TYPE: m
    for m in (RestrictDefaultSecurityGroup, AutoDeleteObjects, BackupVaultCleaner, TxlogBootstrap)
}
