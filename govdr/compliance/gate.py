"""The compliance gate that runs on every synth.

Three cdk-nag packs (NIST SP 800-53 rev5, AWS Solutions, HIPAA Security) plus govdr's own
checks for what those packs cannot see. Any unacknowledged finding fails ``app.synth()``,
so ``make synth``, ``cdk synth``, ``cdk deploy`` and the tests all stop on it.
Findings accepted by design are acknowledged where their resource is built, with the reason
(govdr.constructs.nag_notes); the gate only attaches the packs and runs the checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import aws_cdk as cdk
import jsii
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks

from govdr.compliance import custom_resources as custom_resources_rule
from govdr.compliance import flows as flows_rule
from govdr.compliance import key_requirements as key_requirements_rule
from govdr.compliance import policy_grammar as policy_grammar_rule
from govdr.compliance import template_checks as tc
from govdr.compliance.custom_resources import custom_resource_timeout_findings
from govdr.compliance.finding import Finding
from govdr.compliance.flows import network_flow_findings
from govdr.compliance.key_requirements import key_requirement_findings
from govdr.compliance.policy_grammar import policy_grammar_findings
from govdr.compliance.rules import alarm_actions as alarm_actions_rule
from govdr.compliance.rules import audit_trail as audit_trail_rule
from govdr.compliance.rules import backup_coverage as backup_coverage_rule
from govdr.compliance.rules import database_tls as database_tls_rule
from govdr.compliance.rules import destroyable as destroyable_rule
from govdr.compliance.rules import drill_connect as drill_connect_rule
from govdr.compliance.rules import engine_version as engine_version_rule
from govdr.compliance.rules import file_system_tls as file_system_tls_rule
from govdr.compliance.rules import iam_wildcards as iam_wildcards_rule
from govdr.compliance.rules import key_rotation as key_rotation_rule
from govdr.compliance.rules import lambda_concurrency as lambda_concurrency_rule
from govdr.compliance.rules import log_groups as log_groups_rule
from govdr.compliance.rules import monitoring_coverage as monitoring_coverage_rule
from govdr.compliance.rules import naming as naming_rule
from govdr.compliance.rules import no_open_ingress as no_open_ingress_rule
from govdr.compliance.rules import no_transform as no_transform_rule
from govdr.compliance.rules import pgaudit as pgaudit_rule
from govdr.compliance.rules import plaintext_secrets as plaintext_secrets_rule
from govdr.compliance.rules import rotation_order as rotation_order_rule
from govdr.compliance.rules import slot_wal_cap as slot_wal_cap_rule
from govdr.compliance.rules import trail as trail_rule
from govdr.compliance.rules import transport_tls as transport_tls_rule
from govdr.compliance.templates import Template
from govdr.config import DrConfig
from govdr.network_flows import flows_for

PLUGIN_NAME = "govdr"

# Each rule's module says how to fix its findings (RULE, FIX beside the rule's code).
RULE_MODULES: tuple[ModuleType, ...] = (
    database_tls_rule,
    file_system_tls_rule,
    key_rotation_rule,
    no_open_ingress_rule,
    log_groups_rule,
    pgaudit_rule,
    alarm_actions_rule,
    transport_tls_rule,
    backup_coverage_rule,
    audit_trail_rule,
    trail_rule,
    monitoring_coverage_rule,
    naming_rule,
    iam_wildcards_rule,
    plaintext_secrets_rule,
    destroyable_rule,
    engine_version_rule,
    policy_grammar_rule,
    key_requirements_rule,
    custom_resources_rule,
    flows_rule,
    no_transform_rule,
    rotation_order_rule,
    slot_wal_cap_rule,
    lambda_concurrency_rule,
    drill_connect_rule,
)
RULE_FIXES: dict[str, str] = {module.RULE: module.FIX for module in RULE_MODULES}


def own_checks(config: DrConfig) -> dict[str, Callable[[Template], list[Finding]]]:
    """govdr's rules, by name; destroyability applies unless the prod switch is on."""
    checks = dict(tc.CHECKS)
    checks[naming_rule.RULE] = lambda t: naming_rule.naming_findings(t, config.environment_suffix)
    checks[log_groups_rule.RULE] = lambda t: log_groups_rule.log_group_findings(t, 365)
    checks[iam_wildcards_rule.RULE] = iam_wildcards_rule.iam_wildcard_findings
    checks[plaintext_secrets_rule.RULE] = plaintext_secrets_rule.plaintext_secret_findings
    checks[custom_resources_rule.RULE] = custom_resource_timeout_findings
    if not config.retain_data:
        checks[destroyable_rule.RULE] = destroyable_rule.destroyability_findings
    return checks


def synth_checks(
    config: DrConfig,
) -> dict[str, Callable[[dict[str, Template]], list[Finding]]]:
    """Checks over the whole synthesis at once (root and every nested template together):
    what one template cannot tell, such as a flow between stacks or the one trail per synth."""
    return {
        audit_trail_rule.RULE: lambda templates: audit_trail_rule.trail_presence_findings(
            templates, config.existing_trail_arn
        ),
        policy_grammar_rule.RULE: policy_grammar_findings,
        key_requirements_rule.RULE: key_requirement_findings,
        slot_wal_cap_rule.RULE: slot_wal_cap_rule.slot_wal_cap_findings,
        monitoring_coverage_rule.RULE: monitoring_coverage_rule.monitoring_coverage_findings,
        flows_rule.RULE: lambda templates: network_flow_findings(
            templates, config.environment_suffix, flows_for(config.retain_data)
        ),
    }


def _as_of(rule: str, finding: Finding) -> Finding:
    """The finding with its rule and the rule's fix."""
    fix = RULE_FIXES.get(rule, "see docs/compliance/fedramp-moderate.md")
    return replace(finding, rule=rule, fix=fix)


def run_own_checks(
    config: DrConfig, templates: dict[str, Template]
) -> list[tuple[str, str, Finding]]:
    """(rule, template name, finding) for every violation in the given templates; each
    finding carries its rule and fix."""
    results: list[tuple[str, str, Finding]] = []
    for rule, check in own_checks(config).items():
        for name, template in templates.items():
            results.extend((rule, name, _as_of(rule, f)) for f in check(template))
    root = next(iter(sorted(templates)), "")
    for rule, synth_check in synth_checks(config).items():
        results.extend((rule, root, _as_of(rule, f)) for f in synth_check(templates))
    return results


@jsii.implements(cdk.IPolicyValidationPlugin)
class GovdrChecks:
    """CDK validation plugin running govdr's own checks over every synthesized template."""

    def __init__(self, config: DrConfig) -> None:
        self._config = config

    @property
    def name(self) -> str:
        return PLUGIN_NAME

    @property
    def version(self) -> str:
        return "1.0.0"

    @property
    def rule_ids(self) -> list[str]:
        rules = [*own_checks(self._config), *synth_checks(self._config)]
        return [f"govdr-{rule}" for rule in rules]

    def validate(self, context: cdk.IPolicyValidationContext) -> cdk.PolicyValidationPluginReport:
        paths = _all_template_paths(list(context.template_paths))
        templates = {str(p): json.loads(p.read_text()) for p in paths}
        violations = []
        for rule, path, finding in run_own_checks(self._config, templates):
            violations.append(
                cdk.PolicyViolation(
                    rule_name=f"govdr-{rule}",
                    description=str(finding),
                    violating_resources=[
                        cdk.PolicyViolatingResource(
                            resource_logical_id=finding.logical_id,
                            template_path=path,
                            locations=["Properties"],
                        )
                    ],
                    severity="error",
                    fix=finding.fix,
                )
            )
        return cdk.PolicyValidationPluginReport(success=not violations, violations=violations)


def _all_template_paths(paths: list[str]) -> list[Path]:
    """The given root templates and the nested-stack templates of this synth.

    Nested templates are taken from each root stack's asset manifest, which every synth
    rewrites, not by listing the directory, which may hold templates of earlier synths.
    """
    found: dict[str, Path] = {}
    for raw in paths:
        root = Path(raw)
        found[str(root)] = root
        manifest = root.with_name(root.name.replace(".template.json", ".assets.json"))
        if not manifest.is_file():
            continue
        for asset in json.loads(manifest.read_text()).get("files", {}).values():
            source = str(asset.get("source", {}).get("path", ""))
            if source.endswith(".nested.template.json"):
                nested = root.parent / source
                found[str(nested)] = nested
    return sorted(found.values())


def apply_compliance(app: cdk.App, config: DrConfig) -> None:
    """Attach the rule packs and govdr's checks to the app; findings then fail synth."""
    cdk.Validations.of(app).add_plugins(
        NIST80053R5Checks(app),
        AwsSolutionsChecks(app),
        HIPAASecurityChecks(app),
        GovdrChecks(config),
    )
