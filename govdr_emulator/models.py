"""CloudFormation resource types the emulator skips, implemented on its own service backends.

Each model creates the resource through the moto backend of its service, so the resource can
be read back through that service's API exactly as on AWS; delete removes it again. Custom
resources whose Lambda the emulator cannot run (no Docker) perform the same effect here and
say so in their ``EMULATED`` note.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string
import uuid
from typing import Any, ClassVar

from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel
from moto.moto_api._internal import mock_random

Props = dict[str, Any]


def _props(cloudformation_json: Any) -> Props:
    props = cloudformation_json.get("Properties", {})
    return props if isinstance(props, dict) else {}


def _tags_dict(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t["Key"]): str(t["Value"]) for t in tags or [] if isinstance(t, dict)}


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _Model(CloudFormationModel):
    """Common plumbing: physical ID, attributes, no-op update by re-create."""

    CFN_TYPE = ""
    ATTRIBUTES: ClassVar[dict[str, str]] = {}

    def __init__(self, physical_id: str, **attributes: Any) -> None:
        self._physical_id = physical_id
        self._attributes = attributes

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.CFN_TYPE

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name in self._attributes:
            return self._attributes[attribute_name]
        raise UnformattedGetAttTemplateException()

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[override]
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        cls.delete_from_cloudformation_json(
            original_resource.physical_resource_id, cloudformation_json, account_id, region_name
        )
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        return cls.create(_props(cloudformation_json), resource_name, account_id, region_name)

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> _Model:
        """Create the resource on its backend from the template's Properties."""
        raise NotImplementedError

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[override]
        cls, name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        cls.delete_resource(name, account_id, region_name)

    @classmethod
    def delete_resource(cls, physical_id: str, account_id: str, region_name: str) -> None:
        """Delete the resource from its backend (nothing to do by default)."""


# --- Secrets Manager ---------------------------------------------------------------------


def _generate_password(spec: Props) -> str:
    """GenerateSecretString as Secrets Manager does it: random, honoring length and exclusions."""
    length = int(spec.get("PasswordLength", 32))
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += string.punctuation
    alphabet = "".join(c for c in alphabet if c not in excluded)
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Secret(_Model):
    CFN_TYPE = "AWS::SecretsManager::Secret"
    ATTRIBUTES: ClassVar[dict[str, str]] = {"Id": "", "Arn": ""}

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> Secret:
        from moto.secretsmanager.models import secretsmanager_backends

        backend = secretsmanager_backends[account_id][region_name]
        secret_string = props.get("SecretString")
        generate = props.get("GenerateSecretString")
        if generate is not None:
            value = _generate_password(generate)
            template = generate.get("SecretStringTemplate")
            if template:
                doc = json.loads(template)
                doc[generate.get("GenerateStringKey", "password")] = value
                secret_string = json.dumps(doc)
            else:
                secret_string = value
        name = props.get("Name") or name
        result = backend.create_secret(
            name=name,
            secret_string=secret_string,
            secret_binary=None,
            description=props.get("Description"),
            tags=[{"Key": k, "Value": v} for k, v in _tags_dict(props.get("Tags")).items()],
            kms_key_id=props.get("KmsKeyId"),
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        arn = json.loads(result)["ARN"] if isinstance(result, str) else result["ARN"]
        return cls(arn, Id=arn, Arn=arn)

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from moto.secretsmanager.models import secretsmanager_backends

        backend = secretsmanager_backends[account_id][region_name]
        if backend._is_valid_identifier(name):
            backend.delete_secret(
                secret_id=name,
                recovery_window_in_days=None,
                force_delete_without_recovery=True,
            )


class SecretTargetAttachment(_Model):
    """Adds the target's connection fields to the secret, as Secrets Manager does."""

    CFN_TYPE = "AWS::SecretsManager::SecretTargetAttachment"

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> SecretTargetAttachment:
        from moto.rds.models import rds_backends
        from moto.secretsmanager.models import secretsmanager_backends

        secret_id = props["SecretId"]
        backend = secretsmanager_backends[account_id][region_name]
        value = backend.get_secret_value(secret_id, None, "AWSCURRENT")  # type: ignore[arg-type]
        current = json.loads(value.get("SecretString") or "{}")
        if props.get("TargetType") == "AWS::RDS::DBInstance":
            db = rds_backends[account_id][region_name].describe_db_instances(props["TargetId"])[0]
            current.update(
                {
                    "engine": db.engine,
                    "host": db.address,
                    "port": int(db.port),
                    "dbname": db.db_name,
                    "dbInstanceIdentifier": db.db_instance_identifier,
                }
            )
        backend.put_secret_value(
            secret_id=secret_id,
            secret_string=json.dumps(current),
            secret_binary=None,
            client_request_token=str(uuid.uuid4()),
            version_stages=["AWSCURRENT"],
        )
        return cls(secret_id)


class SecretResourcePolicy(_Model):
    CFN_TYPE = "AWS::SecretsManager::ResourcePolicy"

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> SecretResourcePolicy:
        from moto.secretsmanager.models import secretsmanager_backends

        secretsmanager_backends[account_id][region_name].put_resource_policy(
            props["SecretId"], _json(props["ResourcePolicy"])
        )
        return cls(props["SecretId"])


class RotationSchedule(_Model):
    """Enables rotation with the template's rules and names the rotation function (by ARN,
    or by name for a hosted rotation); the function itself cannot run here."""

    CFN_TYPE = "AWS::SecretsManager::RotationSchedule"
    EMULATED = "rotation is configured, but the emulator cannot run the rotation function"

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> RotationSchedule:
        from moto.secretsmanager.models import secretsmanager_backends

        backend = secretsmanager_backends[account_id][region_name]
        secret = backend.secrets[props["SecretId"]]
        hosted = props.get("HostedRotationLambda") or {}
        function = hosted.get("RotationLambdaName") or props.get("RotationLambdaARN")
        rules = dict(props.get("RotationRules") or {})
        secret.rotation_requested = True
        secret.rotation_enabled = True
        if function:
            secret.rotation_lambda_arn = (
                function
                if str(function).startswith("arn:")
                else f"arn:aws:lambda:{region_name}:{account_id}:function:{function}"
            )
        secret.auto_rotate_after_days = _days(rules.get("ScheduleExpression")) or rules.get(
            "AutomaticallyAfterDays"
        )
        return cls(f"{props['SecretId']}|rotation")


def _days(expression: Any) -> int | None:
    text = str(expression or "")
    if text.startswith("rate(") and "day" in text:
        return int(text[5:].split()[0])
    return None


# --- CloudWatch, SNS, S3, RDS events, CloudTrail ----------------------------------------------


class Alarm(_Model):
    CFN_TYPE = "AWS::CloudWatch::Alarm"
    ATTRIBUTES: ClassVar[dict[str, str]] = {"Arn": ""}

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> Alarm:
        from moto.cloudwatch.models import cloudwatch_backends

        p = props
        name = p.get("AlarmName") or name
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            comparison_operator=p.get("ComparisonOperator"),
            evaluation_periods=int(p.get("EvaluationPeriods", 1)),
            period=int(p.get("Period", 60)),
            threshold=float(p.get("Threshold", 0)),
            statistic=p.get("Statistic"),
            description=p.get("AlarmDescription"),
            dimensions=p.get("Dimensions", []),
            alarm_actions=p.get("AlarmActions", []),
            datapoints_to_alarm=p.get("DatapointsToAlarm"),
            ok_actions=p.get("OKActions", []),
            insufficient_data_actions=p.get("InsufficientDataActions", []),
            actions_enabled=p.get("ActionsEnabled", True),
            treat_missing_data=p.get("TreatMissingData"),
        )
        return cls(name, Arn=alarm.alarm_arn)

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch_backends[account_id][region_name].delete_alarms([name])


class TopicPolicy(_Model):
    CFN_TYPE = "AWS::SNS::TopicPolicy"

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> TopicPolicy:
        from moto.sns.models import sns_backends

        p = props
        for topic_arn in p.get("Topics", []):
            # The backend takes the attribute name in snake case, as its API layer passes it.
            sns_backends[account_id][region_name].set_topic_attribute(
                topic_arn, "policy", _json(p["PolicyDocument"])
            )
        return cls(f"{name}")


class BucketPolicy(_Model):
    CFN_TYPE = "AWS::S3::BucketPolicy"

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> BucketPolicy:
        from moto.s3.models import s3_backends

        p = props
        s3_backends[account_id]["global"].put_bucket_policy(
            p["Bucket"], _json(p["PolicyDocument"]).encode()
        )
        return cls(p["Bucket"])

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from moto.s3.models import s3_backends

        backend = s3_backends[account_id]["global"]
        if name in backend.buckets:
            backend.delete_bucket_policy(name)


class EventSubscription(_Model):
    CFN_TYPE = "AWS::RDS::EventSubscription"

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> EventSubscription:
        from moto.rds.models import rds_backends

        p = props
        name = p.get("SubscriptionName") or name
        rds_backends[account_id][region_name].create_event_subscription(
            {
                "subscription_name": name,
                "sns_topic_arn": p["SnsTopicArn"],
                "source_type": p.get("SourceType"),
                "event_categories": p.get("EventCategories", []),
                "source_ids": p.get("SourceIds", []),
                "enabled": p.get("Enabled", True),
                "tags": [{"Key": k, "Value": v} for k, v in _tags_dict(p.get("Tags")).items()],
            }
        )
        return cls(name)

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from moto.rds.models import rds_backends

        backend = rds_backends[account_id][region_name]
        if name in backend.event_subscriptions:
            backend.delete_event_subscription(name)


class Trail(_Model):
    CFN_TYPE = "AWS::CloudTrail::Trail"
    ATTRIBUTES: ClassVar[dict[str, str]] = {"Arn": "", "SnsTopicArn": ""}

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> Trail:
        from moto.cloudtrail.models import cloudtrail_backends

        p = props
        name = p.get("TrailName") or name
        backend = cloudtrail_backends[account_id][region_name]
        trail = backend.create_trail(
            name=name,
            bucket_name=p["S3BucketName"],
            s3_key_prefix=p.get("S3KeyPrefix"),
            sns_topic_name=p.get("SnsTopicName"),
            is_global=p.get("IncludeGlobalServiceEvents", True),
            is_multi_region=p.get("IsMultiRegionTrail", False),
            log_validation=p.get("EnableLogFileValidation", False),
            is_org_trail=p.get("IsOrganizationTrail", False),
            cw_log_group_arn=p.get("CloudWatchLogsLogGroupArn"),
            cw_role_arn=p.get("CloudWatchLogsRoleArn"),
            kms_key_id=p.get("KMSKeyId"),
            tags_list=[{"Key": k, "Value": v} for k, v in _tags_dict(p.get("Tags")).items()],
        )
        if p.get("IsLogging", False):
            backend.start_logging(name)
        return cls(name, Arn=trail.arn, SnsTopicArn=p.get("SnsTopicName"))

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from moto.cloudtrail.models import cloudtrail_backends

        backend = cloudtrail_backends[account_id][region_name]
        if name in backend.trails:
            backend.delete_trail(name)


# --- EC2 ---------------------------------------------------------------------------------


class SecurityGroupEgress(_Model):
    CFN_TYPE = "AWS::EC2::SecurityGroupEgress"

    @classmethod
    def _rule(cls, p: Props) -> dict[str, Any]:
        return {
            "group_id": p["GroupId"],
            "ip_protocol": str(p.get("IpProtocol", "-1")),
            "from_port": p.get("FromPort"),
            "to_port": p.get("ToPort"),
            "ip_ranges": [{"CidrIp": p["CidrIp"], "Description": p.get("Description")}]
            if p.get("CidrIp")
            else [],
            "source_groups": [
                {"GroupId": p["DestinationSecurityGroupId"], "Description": p.get("Description")}
            ]
            if p.get("DestinationSecurityGroupId")
            else [],
        }

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> SecurityGroupEgress:
        from moto.ec2.models import ec2_backends

        rule = cls._rule(props)
        ec2_backends[account_id][region_name].authorize_security_group_egress(
            group_name_or_id=rule["group_id"],
            ip_protocol=rule["ip_protocol"],
            from_port=rule["from_port"],
            to_port=rule["to_port"],
            ip_ranges=rule["ip_ranges"],
            source_groups=rule["source_groups"],
        )
        return cls(f"{rule['group_id']}-egress-{mock_random.get_random_hex(8)}")


# --- AWS Backup ----------------------------------------------------------------------------


class BackupVault(_Model):
    CFN_TYPE = "AWS::Backup::BackupVault"
    ATTRIBUTES: ClassVar[dict[str, str]] = {"BackupVaultName": "", "BackupVaultArn": ""}

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> BackupVault:
        from moto.backup.models import backup_backends

        p = props
        name = p.get("BackupVaultName") or name
        vault = backup_backends[account_id][region_name].create_backup_vault(
            backup_vault_name=name,
            backup_vault_tags=_tags_dict(p.get("BackupVaultTags")),
            encryption_key_arn=p.get("EncryptionKeyArn"),
            creator_request_id=str(uuid.uuid4()),
        )
        return cls(name, BackupVaultName=name, BackupVaultArn=vault.backup_vault_arn)

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from moto.backup.models import backup_backends

        backend = backup_backends[account_id][region_name]
        if name in backend.vaults:
            backend.delete_backup_vault(name)


_RULE_KEYS = {
    "RuleName": "RuleName",
    "TargetBackupVault": "TargetBackupVaultName",
    "ScheduleExpression": "ScheduleExpression",
    "StartWindowMinutes": "StartWindowMinutes",
    "CompletionWindowMinutes": "CompletionWindowMinutes",
    "Lifecycle": "Lifecycle",
    "EnableContinuousBackup": "EnableContinuousBackup",
    "CopyActions": "CopyActions",
    "RecoveryPointTags": "RecoveryPointTags",
}


class BackupPlan(_Model):
    CFN_TYPE = "AWS::Backup::BackupPlan"
    ATTRIBUTES: ClassVar[dict[str, str]] = {
        "BackupPlanId": "",
        "BackupPlanArn": "",
        "VersionId": "",
    }

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> BackupPlan:
        from moto.backup.models import backup_backends

        p = props
        doc = p["BackupPlan"]
        plan_doc = {
            "BackupPlanName": doc["BackupPlanName"],
            "Rules": [
                {api: rule[cfn] for cfn, api in _RULE_KEYS.items() if cfn in rule}
                for rule in doc.get("BackupPlanRule", [])
            ],
        }
        plan = backup_backends[account_id][region_name].create_backup_plan(
            backup_plan=plan_doc,
            backup_plan_tags=_tags_dict(p.get("BackupPlanTags")),
            creator_request_id=str(uuid.uuid4()),
        )
        return cls(
            plan.backup_plan_id,
            BackupPlanId=plan.backup_plan_id,
            BackupPlanArn=plan.backup_plan_arn,
            VersionId=plan.version_id,
        )

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from moto.backup.models import backup_backends

        backend = backup_backends[account_id][region_name]
        if name in backend.plans:
            backend.delete_backup_plan(name)


class BackupSelection(_Model):
    CFN_TYPE = "AWS::Backup::BackupSelection"
    ATTRIBUTES: ClassVar[dict[str, str]] = {"SelectionId": "", "BackupPlanId": "", "Id": ""}

    @classmethod
    def create(cls, props: Props, name: str, account_id: str, region_name: str) -> BackupSelection:
        from govdr_emulator.backup_selections import create_selection

        p = props
        selection_id = create_selection(
            account_id, region_name, p["BackupPlanId"], p["BackupSelection"]
        )
        return cls(
            selection_id, SelectionId=selection_id, BackupPlanId=p["BackupPlanId"], Id=selection_id
        )

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from govdr_emulator.backup_selections import delete_selection

        delete_selection(account_id, region_name, name)


class EventInvokeConfig(_Model):
    """Retry and event-age limits of asynchronous invocations of one function."""

    CFN_TYPE = "AWS::Lambda::EventInvokeConfig"

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> EventInvokeConfig:
        from moto.awslambda.models import lambda_backends

        function = props["FunctionName"]
        config = {
            key: props[key]
            for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
            if key in props
        }
        lambda_backends[account_id][region_name].put_function_event_invoke_config(function, config)
        return cls(f"{function}|{props.get('Qualifier', '$LATEST')}")

    @classmethod
    def delete_resource(cls, name: str, account_id: str, region_name: str) -> None:
        from moto.awslambda.models import lambda_backends

        function = name.split("|", 1)[0]
        with contextlib.suppress(Exception):  # the function may already be gone
            lambda_backends[account_id][region_name].delete_function_event_invoke_config(function)


class ExperimentTemplate(_Model):
    """AWS FIS has no emulator backend: the template's required parts are checked, no more."""

    CFN_TYPE = "AWS::FIS::ExperimentTemplate"
    EMULATED = "the emulator has no AWS FIS: the failover template is validated, never run"

    @classmethod
    def create(
        cls, props: Props, name: str, account_id: str, region_name: str
    ) -> ExperimentTemplate:
        for required in ("Actions", "Targets", "StopConditions", "RoleArn"):
            if not props.get(required):
                raise ValueError(f"AWS::FIS::ExperimentTemplate needs {required}")
        return cls("EXT" + uuid.uuid4().hex[:14].upper())


MODELS: tuple[type[_Model], ...] = (
    Secret,
    SecretTargetAttachment,
    SecretResourcePolicy,
    RotationSchedule,
    Alarm,
    TopicPolicy,
    BucketPolicy,
    EventSubscription,
    Trail,
    SecurityGroupEgress,
    BackupVault,
    BackupPlan,
    BackupSelection,
    EventInvokeConfig,
    ExperimentTemplate,
)
