"""Which component must reach which, declared once.

The Network stack builds every security-group rule from :data:`FLOWS`, and the synth gate
(``govdr.compliance.flows``) proves on the synthesized templates that each flow is allowed
end to end and that nothing else is. Security groups are stateful: a flow needs an egress rule
on the client's group and an ingress rule on the server's group (for a group-to-group
reference both are evaluated); the reply is allowed by connection tracking
(https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html,
https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html).

The S3 gateway endpoint has no security group: a flow to it needs an egress rule that admits
S3's addresses and a route to the endpoint in the route table of every subnet the client runs
in (https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-s3.html). CDK's Provider
framework in front of each custom-resource handler needs it: a custom resource's response is an
HTTPS PUT to a pre-signed S3 URL
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html); the
handlers themselves only return their result to the framework.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

POSTGRES_PORT = 5432
NFS_PORT = 2049
HTTPS_PORT = 443


class Group(StrEnum):
    """The security groups of the platform, by the name they carry before the suffix."""

    ROTATION = "rotation-sg"
    TXLOG = "txlog-sg"
    BOOTSTRAP = "txlog-bootstrap-sg"
    OPS = "ops-sg"
    MONITOR = "rpo-monitor-sg"
    DATABASE = "rds-sg"
    FILE_SYSTEM = "efs-sg"
    ENDPOINTS = "vpce-sg"
    PROVIDER = "cfn-provider-sg"


class Gateway(StrEnum):
    """Gateway endpoints: reached by route, not by security group."""

    S3 = "s3"


# What carries each server-side group; a flow to the group reaches nothing without it.
SERVERS: dict[Group, str] = {
    Group.DATABASE: "AWS::RDS::DBInstance",
    Group.FILE_SYSTEM: "AWS::EFS::MountTarget",
    Group.ENDPOINTS: "AWS::EC2::VPCEndpoint",
}

ROTATION_FUNCTIONS = ("rds-rotation", "rds-txlog-rotation")
ARCHIVER = "txlog-archiver"
BOOTSTRAP = "txlog-bootstrap"
VAULT_CLEANER = "backup-vault-cleaner"
RPO_MONITOR = "rpo-monitor"
# The Provider framework's function in front of each custom-resource handler
# (govdr.constructs.provider.provider_function_type).
BOOTSTRAP_PROVIDER = f"{BOOTSTRAP}-provider"
VAULT_CLEANER_PROVIDER = f"{VAULT_CLEANER}-provider"


@dataclass(frozen=True)
class Flow:
    """A TCP connection that ``clients`` (function names before the suffix), which run in
    ``source``, open to ``destination`` on ``port``. ``service`` names the interface
    endpoint's service (``com.amazonaws.<region>.<service>``) for flows to the endpoints."""

    clients: tuple[str, ...]
    source: Group
    destination: Group | Gateway
    port: int
    reason: str
    service: str | None = None

    @property
    def destination_label(self) -> str:
        if self.destination is Gateway.S3:
            return "S3 gateway endpoint"
        if self.service:
            return f"{self.destination.value} ({self.service})"
        return self.destination.value


FLOWS: tuple[Flow, ...] = (
    Flow(
        ROTATION_FUNCTIONS,
        Group.ROTATION,
        Group.DATABASE,
        POSTGRES_PORT,
        "set and test the rotated passwords",
    ),
    Flow(
        ROTATION_FUNCTIONS,
        Group.ROTATION,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "read and stage secret versions",
        service="secretsmanager",
    ),
    Flow((ARCHIVER,), Group.TXLOG, Group.DATABASE, POSTGRES_PORT, "read the logical slot"),
    Flow((ARCHIVER,), Group.TXLOG, Group.FILE_SYSTEM, NFS_PORT, "write the archive (NFS/TLS)"),
    Flow(
        (ARCHIVER,),
        Group.TXLOG,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "read its replication secret",
        service="secretsmanager",
    ),
    Flow(
        (ARCHIVER,),
        Group.TXLOG,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "open the archive's integrity key",
        service="kms",
    ),
    Flow(
        (BOOTSTRAP,),
        Group.BOOTSTRAP,
        Group.DATABASE,
        POSTGRES_PORT,
        "create the replication user, drop its slot",
    ),
    Flow(
        (BOOTSTRAP,),
        Group.BOOTSTRAP,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "read the master and replication secrets",
        service="secretsmanager",
    ),
    Flow(
        (BOOTSTRAP,),
        Group.BOOTSTRAP,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "read its own stack's status (drop the slot only on stack deletion)",
        service="cloudformation",
    ),
    Flow(
        (VAULT_CLEANER,),
        Group.OPS,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "stop backup jobs, delete recovery points",
        service="backup",
    ),
    Flow(
        (VAULT_CLEANER,),
        Group.OPS,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "read its own stack's status (empty the vault only on stack deletion)",
        service="cloudformation",
    ),
    Flow(
        (BOOTSTRAP_PROVIDER, VAULT_CLEANER_PROVIDER),
        Group.PROVIDER,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "invoke its custom-resource handler",
        service="lambda",
    ),
    Flow(
        (BOOTSTRAP_PROVIDER, VAULT_CLEANER_PROVIDER),
        Group.PROVIDER,
        Gateway.S3,
        HTTPS_PORT,
        "answer CloudFormation (pre-signed S3 URL)",
    ),
    Flow(
        (RPO_MONITOR,),
        Group.MONITOR,
        Group.ENDPOINTS,
        HTTPS_PORT,
        "read the instance's latest restorable time",
        service="rds",
    ),
)


def flows_for(retain_data: bool, flows: tuple[Flow, ...] = FLOWS) -> tuple[Flow, ...]:
    """The flows of one synthesis: with the prod switch (data retained) no vault cleaner (nor
    its provider) is built, so they are no clients of any flow."""
    if not retain_data:
        return flows
    absent = {VAULT_CLEANER, VAULT_CLEANER_PROVIDER}
    kept = []
    for flow in flows:
        clients = tuple(c for c in flow.clients if c not in absent)
        if clients:
            kept.append(replace(flow, clients=clients))
    return tuple(kept)


def client_groups(flows: tuple[Flow, ...] = FLOWS) -> dict[str, Group]:
    """Each declared client and the one group it runs in."""
    groups: dict[str, Group] = {}
    for flow in flows:
        for client in flow.clients:
            known = groups.setdefault(client, flow.source)
            if known is not flow.source:
                raise ValueError(
                    f"{client} is declared in {known.value} and {flow.source.value}; "
                    "a function runs in one security group"
                )
    return groups


def markdown_table(flows: tuple[Flow, ...] = FLOWS) -> str:
    """The declaration as the table of docs/architecture.md."""
    lines = ["| clients | from | to | port | why |", "|---|---|---|---|---|"]
    for flow in flows:
        clients = ", ".join(f"`{c}`" for c in flow.clients)
        if flow.destination is Gateway.S3:
            destination = flow.destination_label
        else:
            destination = f"`{flow.destination.value}`"
            if flow.service:
                destination += f" ({flow.service})"
        lines.append(
            f"| {clients} | `{flow.source.value}` | {destination} | {flow.port} | {flow.reason} |"
        )
    return "\n".join(lines)
