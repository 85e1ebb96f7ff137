"""govdr's own per-template rules: one module per rule in govdr/compliance/rules/, registered here
under each module's ``RULE``.

Each rule takes one template (a parsed JSON dict) and returns its findings, one
:class:`~govdr.compliance.finding.Finding` per violation (the logical ID and what is wrong; the
gate adds the rule and its fix). An empty list means the template passes. The rules that need
the configuration, and those over a whole synthesis (several templates at once), are registered
by the gate (govdr.compliance.gate.own_checks and synth_checks).
"""

from __future__ import annotations

from collections.abc import Callable

from govdr.compliance.finding import Finding
from govdr.compliance.rules import (
    alarm_actions,
    backup_coverage,
    database_tls,
    drill_connect,
    engine_version,
    file_system_tls,
    key_rotation,
    lambda_concurrency,
    no_open_ingress,
    no_transform,
    pgaudit,
    rotation_order,
    trail,
    transport_tls,
)
from govdr.compliance.templates import Template

CHECKS: dict[str, Callable[[Template], list[Finding]]] = {
    database_tls.RULE: database_tls.database_tls_findings,
    file_system_tls.RULE: file_system_tls.file_system_tls_findings,
    key_rotation.RULE: key_rotation.key_rotation_findings,
    no_open_ingress.RULE: no_open_ingress.open_ingress_findings,
    pgaudit.RULE: pgaudit.pgaudit_findings,
    alarm_actions.RULE: alarm_actions.alarm_action_findings,
    transport_tls.RULE: transport_tls.transport_tls_findings,
    backup_coverage.RULE: backup_coverage.backup_coverage_findings,
    trail.RULE: trail.trail_findings,
    lambda_concurrency.RULE: lambda_concurrency.lambda_concurrency_findings,
    engine_version.RULE: engine_version.engine_version_findings,
    no_transform.RULE: no_transform.transform_findings,
    rotation_order.RULE: rotation_order.rotation_order_findings,
    drill_connect.RULE: drill_connect.drill_connect_findings,
}
