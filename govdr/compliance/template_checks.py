"""govdr's own template rules: one module per rule in govdr/compliance/rules/, registered here.

Each rule takes one template (a parsed JSON dict) and returns its findings, one
:class:`~govdr.compliance.finding.Finding` per violation (the logical ID and what is wrong; the
gate adds the rule and its fix). An empty list means the template passes. The rules over a
whole synthesis (several templates at once) are registered by the gate
(govdr.compliance.gate.synth_checks).
"""

from __future__ import annotations

from collections.abc import Callable

from govdr.compliance.finding import Finding
from govdr.compliance.rules.alarm_actions import (
    alarm_action_findings,
)
from govdr.compliance.rules.audit_trail import (
    trail_presence_findings,
)
from govdr.compliance.rules.backup_coverage import (
    backup_coverage_findings,
)
from govdr.compliance.rules.database_tls import (
    database_tls_findings,
)
from govdr.compliance.rules.destroyable import (
    STATEFUL_TYPES,
    destroyability_findings,
)
from govdr.compliance.rules.drill_connect import (
    DRILL_DB_USER,
    drill_connect_findings,
)
from govdr.compliance.rules.engine_version import (
    engine_version_findings,
)
from govdr.compliance.rules.file_system_tls import (
    file_system_tls_findings,
)
from govdr.compliance.rules.iam_wildcards import (
    iam_wildcard_findings,
    unused_wildcard_allowances,
)
from govdr.compliance.rules.key_rotation import (
    key_rotation_findings,
)
from govdr.compliance.rules.lambda_concurrency import (
    lambda_concurrency_findings,
)
from govdr.compliance.rules.log_groups import (
    log_group_findings,
)
from govdr.compliance.rules.monitoring_coverage import (
    REQUIRED_ALARM_METRICS,
    REQUIRED_RDS_EVENT_CATEGORIES,
    monitoring_coverage_findings,
)
from govdr.compliance.rules.naming import (
    GENERATED_NAME_TYPES,
    NAME_PROPERTIES,
    NAME_TAG_TYPES,
    naming_findings,
)
from govdr.compliance.rules.no_open_ingress import (
    open_ingress_findings,
)
from govdr.compliance.rules.no_transform import (
    DEPRECATED_RUNTIMES,
    FUNCTION_TYPES,
    transform_findings,
)
from govdr.compliance.rules.pgaudit import (
    pgaudit_findings,
)
from govdr.compliance.rules.plaintext_secrets import (
    plaintext_secret_findings,
)
from govdr.compliance.rules.rotation_order import (
    rotation_order_findings,
)
from govdr.compliance.rules.slot_wal_cap import (
    SLOT_LAG_METRIC,
    SLOT_WAL_KEEP_PARAMETER,
    slot_wal_cap_findings,
)
from govdr.compliance.rules.trail import (
    trail_findings,
)
from govdr.compliance.rules.transport_tls import (
    transport_tls_findings,
)
from govdr.compliance.templates import (
    LOG_GROUP_TYPE,
    Template,
    as_list,
    denies_insecure_transport,
    identity_statements,
    props_of,
    ref_of,
    referenced_ids,
    references_in,
    resources,
    statements_of,
)

CHECKS: dict[str, Callable[[Template], list[Finding]]] = {
    "database-tls": database_tls_findings,
    "file-system-tls": file_system_tls_findings,
    "key-rotation": key_rotation_findings,
    "no-open-ingress": open_ingress_findings,
    "log-groups": log_group_findings,
    "pgaudit": pgaudit_findings,
    "alarm-actions": alarm_action_findings,
    "transport-tls": transport_tls_findings,
    "backup-coverage": backup_coverage_findings,
    "trail": trail_findings,
    "lambda-concurrency": lambda_concurrency_findings,
    "engine-version": engine_version_findings,
    "no-transform": transform_findings,
    "rotation-order": rotation_order_findings,
    "drill-connect": drill_connect_findings,
}

__all__ = [
    "CHECKS",
    "DEPRECATED_RUNTIMES",
    "DRILL_DB_USER",
    "FUNCTION_TYPES",
    "GENERATED_NAME_TYPES",
    "LOG_GROUP_TYPE",
    "NAME_PROPERTIES",
    "NAME_TAG_TYPES",
    "REQUIRED_ALARM_METRICS",
    "REQUIRED_RDS_EVENT_CATEGORIES",
    "SLOT_LAG_METRIC",
    "SLOT_WAL_KEEP_PARAMETER",
    "STATEFUL_TYPES",
    "Finding",
    "Template",
    "alarm_action_findings",
    "as_list",
    "backup_coverage_findings",
    "database_tls_findings",
    "denies_insecure_transport",
    "destroyability_findings",
    "drill_connect_findings",
    "engine_version_findings",
    "file_system_tls_findings",
    "iam_wildcard_findings",
    "identity_statements",
    "key_rotation_findings",
    "lambda_concurrency_findings",
    "log_group_findings",
    "monitoring_coverage_findings",
    "naming_findings",
    "open_ingress_findings",
    "pgaudit_findings",
    "plaintext_secret_findings",
    "props_of",
    "ref_of",
    "referenced_ids",
    "references_in",
    "resources",
    "rotation_order_findings",
    "slot_wal_cap_findings",
    "statements_of",
    "trail_findings",
    "trail_presence_findings",
    "transform_findings",
    "transport_tls_findings",
    "unused_wildcard_allowances",
]
