"""The gate rule ``plaintext-secrets``."""

from __future__ import annotations

import re
from typing import Any

from govdr.compliance.finding import Finding
from govdr.compliance.templates import (
    Template,
)

RULE = "plaintext-secrets"
FIX = "generate secrets in Secrets Manager and use dynamic references"


_SECRET_KEY_RE = re.compile(r"(?i)(password|passwd|secretstring$|apikey|accesskey|token$)")


_SAFE_SECRET_KEYS = frozenset({"SecretStringTemplate", "GenerateStringKey", "ExcludeCharacters"})


_SECRET_VALUE_RES = (
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)


def plaintext_secret_findings(template: Template) -> list[Finding]:
    """No literal credential in a template: passwords, access keys, private keys."""
    findings: list[Finding] = []

    def walk(logical_id: str, value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(logical_id, v, str(k))
        elif isinstance(value, list):
            for item in value:
                walk(logical_id, item, key)
        elif isinstance(value, str):
            if (
                _SECRET_KEY_RE.search(key)
                and key not in _SAFE_SECRET_KEYS
                and value
                and "{{resolve:" not in value
            ):
                findings.append(Finding(logical_id, f"literal value in {key}"))
            if any(r.search(value) for r in _SECRET_VALUE_RES):
                findings.append(Finding(logical_id, f"credential-like value in {key}"))

    for logical_id, resource in template.get("Resources", {}).items():
        walk(logical_id, resource, "")
    for section in ("Parameters", "Outputs"):
        for name, entry in template.get(section, {}).items():
            walk(name, entry, "")
    return findings
