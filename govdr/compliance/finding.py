"""A finding of one of govdr's own gate rules, as a value.

``logical_id`` is the resource at fault (its CloudFormation logical ID, or, for what no single
resource holds, the subject: ``monitoring``, ``audit``, ``network-flows``); ``message`` says
what is wrong. The gate sets ``rule`` and ``fix`` from its registry (govdr.compliance.gate),
so a rule says only what it found and where; the gate never parses a finding's text back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    logical_id: str
    message: str
    resource_type: str = ""
    rule: str = ""
    fix: str = ""

    def __str__(self) -> str:
        where = (
            f"{self.logical_id} ({self.resource_type})" if self.resource_type else self.logical_id
        )
        return f"{where}: {self.message}"


def texts(findings: list[Finding]) -> list[str]:
    """The findings as the lines the gate reports."""
    return [str(finding) for finding in findings]


__all__ = ["Finding", "texts"]
