"""The gate rule ``file-system-tls``."""

from __future__ import annotations

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
    denies_insecure_transport,
    props_of,
    resources,
    statements_of,
)

RULE = "file-system-tls"
FIX = "keep the DenyNonTlsAccess statement and the CMK on the file system"


def file_system_tls_findings(template: Template) -> list[Finding]:
    """Every EFS file system is encrypted with a CMK and its policy denies non-TLS access."""
    findings = []
    for logical_id, fs in resources(template, "AWS::EFS::FileSystem"):
        props = props_of(fs)
        if props.get("Encrypted") is not True or not props.get("KmsKeyId"):
            findings.append(
                Finding(logical_id, "file system is not encrypted with a customer-managed key")
            )
        if not any(
            denies_insecure_transport(s) for s in statements_of(props.get("FileSystemPolicy"))
        ):
            findings.append(
                Finding(
                    logical_id,
                    "file-system policy does not deny access without TLS "
                    "(Deny when aws:SecureTransport is false)",
                )
            )
    return findings
