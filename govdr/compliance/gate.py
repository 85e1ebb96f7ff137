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

import aws_cdk as cdk
import jsii
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks

from govdr.compliance import template_checks as tc
from govdr.compliance.custom_resources import custom_resource_timeout_findings
from govdr.compliance.finding import Finding
from govdr.compliance.flows import network_flow_findings
from govdr.compliance.key_requirements import key_requirement_findings
from govdr.compliance.policy_grammar import policy_grammar_findings
from govdr.compliance.template_checks import (
    iam_wildcard_findings,
    plaintext_secret_findings,
)
from govdr.config import DrConfig
from govdr.network_flows import flows_for

PLUGIN_NAME = "govdr"

RULE_FIXES = {
    "database-tls": "keep rds.force_ssl=1 in govdr/stacks/database.py PARAMETERS",
    "file-system-tls": "keep the DenyNonTlsAccess statement and the CMK on the file system",
    "key-rotation": "create keys through govdr.constructs.service_key.ServiceKey",
    "no-open-ingress": "allow traffic from security groups or the VPC CIDR only",
    "log-groups": "create log groups through govdr.constructs.log_group.encrypted_log_group",
    "pgaudit": "keep pgaudit in the parameter group and connection logging from "
    "govdr.engine.connection_logging for the engine major",
    "alarm-actions": "give every alarm an alarm and an OK action to the alarms topic",
    "transport-tls": "set enforce_ssl=True on buckets and topics",
    "backup-coverage": "add a BackupSelection beside the resource, in the same stack",
    "audit-trail": "create the trail (leave existingTrailArn empty) or name an existing "
    "multi-region trail with -c existingTrailArn=arn:aws:cloudtrail:...",
    "trail": "keep the trail logging, validated, encrypted, multi-region and sent to Logs",
    "monitoring-coverage": "keep the alarms, dashboard, event subscription and rules of "
    "govdr/stacks/monitoring.py",
    "naming": "name resources with govdr.naming.name(resource_type, suffix)",
    "iam-wildcards": "scope actions and resources, or list the Sid in WILDCARD_RESOURCE_SIDS",
    "plaintext-secrets": "generate secrets in Secrets Manager and use dynamic references",
    "destroyable": "use RemovalPolicy.DESTROY unless config.retain_data (the prod switch)",
    "engine-version": "give engineVersion as a major alone (18), or pin MAJOR.MINOR with "
    "automatic minor upgrades off (DrConfig.pins_minor_version)",
    "policy-grammar": "use actions and condition keys the service authorization reference lists "
    "for each action, with operators of the key's type; accept a finding AWS documents with "
    "govdr.constructs.policy_notes.accept(...) and its reason",
    "key-requirements": "give the service the statement its AWS page documents (principal, "
    "actions, and only conditions its requests carry) through ServiceKey in "
    "govdr/stacks/security.py",
    "custom-resource-timeout": "give the custom resource service_timeout=Duration.seconds("
    "service_timeout(<handler timeout>)) from govdr.constructs.custom_resources (at most 960 s, "
    "at least the handler's Lambda timeout)",
    "network-flows": "declare the flow in govdr/network_flows.py (the Network stack builds the "
    "rules from it), or remove the rule or function that no declared flow needs",
    "no-transform": "declare every resource in the template itself (no Transform; secrets "
    "rotate by govdr's own function) and use a supported Lambda runtime "
    "(govdr.constructs.python_bundle.RUNTIME)",
    "rotation-order": "make the secret's rotation schedule DependsOn every custom resource that "
    "reads the secret (node.add_dependency)",
    "slot-wal-cap": "keep max_slot_wal_keep_size in the parameter group (slotWalKeepMiB, "
    "govdr/stacks/database.py) and the slot-lag alarm at most half of it "
    "(replicationSlotLagAlarmMiB)",
    "lambda-concurrency": "reserve no concurrency (a fresh account or opt-in region may have "
    "only the unreserved minimum of 10); keep a function single by other means",
}


def own_checks(config: DrConfig) -> dict[str, Callable[[tc.Template], list[Finding]]]:
    """govdr's rules, by name; destroyability applies unless the prod switch is on."""
    checks = dict(tc.CHECKS)
    checks["naming"] = lambda t: tc.naming_findings(t, config.environment_suffix)
    checks["log-groups"] = lambda t: tc.log_group_findings(t, 365)
    checks["iam-wildcards"] = iam_wildcard_findings
    checks["plaintext-secrets"] = plaintext_secret_findings
    checks["custom-resource-timeout"] = custom_resource_timeout_findings
    if not config.retain_data:
        checks["destroyable"] = tc.destroyability_findings
    return checks


def synth_checks(
    config: DrConfig,
) -> dict[str, Callable[[dict[str, tc.Template]], list[Finding]]]:
    """Checks over the whole synthesis at once (root and every nested template together):
    what one template cannot tell, such as a flow between stacks or the one trail per synth."""
    return {
        "audit-trail": lambda templates: tc.trail_presence_findings(
            templates, config.existing_trail_arn
        ),
        "policy-grammar": policy_grammar_findings,
        "key-requirements": key_requirement_findings,
        "slot-wal-cap": tc.slot_wal_cap_findings,
        "monitoring-coverage": tc.monitoring_coverage_findings,
        "network-flows": lambda templates: network_flow_findings(
            templates, config.environment_suffix, flows_for(config.retain_data)
        ),
    }


def _as_of(rule: str, finding: Finding) -> Finding:
    """The finding with its rule and the rule's fix."""
    fix = RULE_FIXES.get(rule, "see docs/compliance/fedramp-moderate.md")
    return replace(finding, rule=rule, fix=fix)


def run_own_checks(
    config: DrConfig, templates: dict[str, tc.Template]
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
