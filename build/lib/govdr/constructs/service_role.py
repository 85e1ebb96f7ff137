"""A role for one AWS service or function, with its permissions in a customer-managed policy."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from constructs import Construct


class ServiceRole(Construct):
    """Role plus one customer-managed policy that holds every statement it needs.

    Inline policies are avoided (NIST AC-6 rule packs flag them), and the role handed to other
    constructs is immutable, so no L2 construct can widen it behind this policy's back.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        role_name: str,
        policy_name: str,
        description: str,
        assumed_by: iam.IPrincipal,
        statements: Sequence[iam.PolicyStatement],
    ) -> None:
        super().__init__(scope, id_)
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            managed_policy_name=policy_name,
            description=description,
            statements=list(statements),
        )
        self.role = iam.Role(
            self,
            "Role",
            role_name=role_name,
            description=description,
            assumed_by=assumed_by,
            managed_policies=[self.policy],
        )
        self.immutable: iam.IRole = self.role.without_policy_updates()


def log_delivery_role(
    scope: Construct,
    id_: str,
    *,
    role_name: str,
    policy_name: str,
    service: str,
    log_group_arn: str,
    description: str,
    extra_actions: Sequence[str] = (),
) -> ServiceRole:
    """A role an AWS service assumes to write into one log group, and nowhere else."""
    return ServiceRole(
        scope,
        id_,
        role_name=role_name,
        policy_name=policy_name,
        description=description,
        assumed_by=iam.ServicePrincipal(service),
        statements=[
            iam.PolicyStatement(
                sid="DeliverToLogGroup",
                actions=["logs:CreateLogStream", "logs:PutLogEvents", *extra_actions],
                resources=[log_group_arn],
            )
        ],
    )
