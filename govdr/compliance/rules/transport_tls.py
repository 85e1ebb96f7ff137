"""The gate rule ``transport-tls``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    as_list,
    denies_insecure_transport,
    props_of,
    resources,
    statements_of,
)

RULE = "transport-tls"
FIX = "set enforce_ssl=True on buckets and topics"


def _policy_denies_insecure(
    template: Template, policy_type: str, target_key: str, ref: str
) -> bool:
    for _, policy in resources(template, policy_type):
        props = props_of(policy)
        targets = as_list(props.get(target_key))
        if {"Ref": ref} not in targets:
            continue
        if any(denies_insecure_transport(s) for s in statements_of(props.get("PolicyDocument"))):
            return True
    return False


def transport_tls_findings(template: Template) -> list[Finding]:
    """Every S3 bucket and SNS topic has a policy that denies requests without TLS."""
    findings = []
    for logical_id, _ in resources(template, "AWS::S3::Bucket"):
        if not _policy_denies_insecure(template, "AWS::S3::BucketPolicy", "Bucket", logical_id):
            findings.append(Finding(logical_id, "bucket policy does not deny requests without TLS"))
    for logical_id, _ in resources(template, "AWS::SNS::Topic"):
        if not _policy_denies_insecure(template, "AWS::SNS::TopicPolicy", "Topics", logical_id):
            findings.append(
                Finding(logical_id, "topic policy does not deny publishing without TLS")
            )
    return findings
