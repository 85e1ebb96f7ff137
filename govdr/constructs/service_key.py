"""A customer-managed KMS key usable only through the AWS services that need it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from govdr.constructs import policy_notes
from govdr.constructs.scanner_notes import accept_check

# Administrative actions only: the account can manage the key, but using it for
# cryptography is granted per service below (mirrors AWS-managed key policies).
ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:Create*",
    "kms:Delete*",
    "kms:Describe*",
    "kms:Disable*",
    "kms:Enable*",
    "kms:Get*",
    "kms:List*",
    "kms:Put*",
    "kms:Revoke*",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:Update*",
)
USE_ACTIONS = (
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
)
PENDING_WINDOW_DAYS = 7


@dataclass(frozen=True)
class ServiceUse:
    """One key-policy statement for a service principal that calls KMS itself.

    Each statement names only actions whose requests carry every condition key it uses
    (a DescribeKey request, for one, carries no encryption context), and ``doc`` is the AWS
    page that documents it. ``notes`` acknowledge policy-grammar findings on the statement
    (issue code -> reason), recorded beside the key (see govdr.constructs.policy_notes).
    """

    sid: str
    principal: str
    actions: tuple[str, ...]
    doc: str
    conditions: Mapping[str, Mapping[str, Any]] | None = None
    notes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountUse:
    """One key-policy statement that lets this account's IAM policies use the key directly,
    only for requests that carry ``conditions`` (e.g. an encryption context naming one
    archive); the caller's own IAM policy must allow the action too
    (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam)."""

    sid: str
    actions: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, Any]]
    doc: str


class ServiceKey(Construct):
    """Symmetric CMK with yearly rotation, an alias and a service-scoped key policy.

    ``via_services`` are service prefixes (``rds``, ``secretsmanager``, ...) that principals of
    this account may use the key through (``kms:ViaService``); ``service_uses`` are the
    statements AWS documents for service principals that use the key directly (CloudWatch
    Logs, CloudTrail, SNS publishers).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        alias_name: str,
        description: str,
        via_services: Sequence[str] = (),
        service_uses: Sequence[ServiceUse] = (),
        account_uses: Sequence[AccountUse] = (),
        retain: bool,
    ) -> None:
        super().__init__(scope, id_)
        if not via_services and not service_uses and not account_uses:
            raise ValueError(f"key {alias_name} must name at least one service that uses it")
        statements = [
            iam.PolicyStatement(
                sid="KeyAdministration",
                principals=[iam.AccountRootPrincipal()],
                actions=list(ADMIN_ACTIONS),
                resources=["*"],
            )
        ]
        if via_services:
            statements.append(
                iam.PolicyStatement(
                    sid="UseThroughServices",
                    principals=[iam.AnyPrincipal()],
                    actions=[*USE_ACTIONS, "kms:CreateGrant", "kms:ListGrants"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {
                            "kms:CallerAccount": Aws.ACCOUNT_ID,
                            "kms:ViaService": [
                                f"{svc}.{Aws.REGION}.amazonaws.com" for svc in via_services
                            ],
                        }
                    },
                )
            )
        for use in service_uses:
            statements.append(
                iam.PolicyStatement(
                    sid=use.sid,
                    principals=[iam.ServicePrincipal(use.principal)],
                    actions=list(use.actions),
                    resources=["*"],
                    conditions=dict(use.conditions) if use.conditions else None,
                )
            )
        for account_use in account_uses:
            statements.append(
                iam.PolicyStatement(
                    sid=account_use.sid,
                    principals=[iam.AccountRootPrincipal()],
                    actions=list(account_use.actions),
                    resources=["*"],
                    conditions={k: dict(v) for k, v in account_use.conditions.items()},
                )
            )
        self.key = kms.Key(
            self,
            "Key",
            alias=alias_name,
            description=description,
            enable_key_rotation=True,
            pending_window=Duration.days(PENDING_WINDOW_DAYS),
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            policy=iam.PolicyDocument(statements=statements),
        )
        if via_services:
            # https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service
            accept_check(
                self.key,
                "CKV_AWS_33",
                "Principal '*' only in UseThroughServices, bound by kms:CallerAccount to this "
                "account and by kms:ViaService to the named services: the form of AWS managed "
                "keys' own policies",
            )
        for use in service_uses:
            for issue, reason in use.notes.items():
                policy_notes.accept(self.key, sid=use.sid, issue=issue, reason=reason)
