"""What services need from our keys: documented requests against the synthesized key policies."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.gate import RULE_FIXES, run_own_checks, synth_checks
from govdr.compliance.key_requirements import (
    ACCOUNT_ROLE,
    CLOUDTRAIL_DOC,
    SNS_DOC,
    key_requirement_findings,
    key_requirements,
)
from govdr.compliance.policy_eval import (
    Request,
    UnsupportedPolicy,
    condition_holds,
    evaluate,
)
from tests.conftest import Synth

TRAIL_ARN = "arn:aws:cloudtrail:eu-central-2:123456789012:trail/trail-qa7"


def _key(templates: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    security = templates["security"]["Resources"]
    lid = next(lid for lid in security if lid.startswith(prefix))
    return lid, security[lid]["Properties"]["KeyPolicy"]


def test_key_requirements_is_a_synth_wide_gate_rule(synth: Synth) -> None:
    assert synth_checks(synth.config)["key-requirements"] is key_requirement_findings
    assert "ServiceKey" in RULE_FIXES["key-requirements"]


def test_every_service_gets_what_aws_documents_from_its_key(synth: Synth) -> None:
    assert texts(key_requirement_findings(synth.all_raw())) == []


def test_requirements_cover_every_service_that_uses_a_key(synth: Synth) -> None:
    requirements, unresolved = key_requirements(synth.all_raw())
    assert unresolved == []
    by_service: dict[str, set[str]] = {}
    for requirement in requirements:
        by_service.setdefault(requirement.service, set()).add(requirement.key.split("Key")[0])
        assert requirement.doc.startswith("https://docs.aws.amazon.com/")
    assert by_service == {
        "CloudWatch Logs": {"Logs"},
        "CloudTrail": {"Audit"},
        "S3 (SSE-KMS)": {"Audit"},
        "SNS publisher cloudwatch.amazonaws.com": {"Alarms"},
        "SNS publisher events.amazonaws.com": {"Alarms"},
        "SNS publisher events.rds.amazonaws.com": {"Alarms"},
        "RDS": {"Database"},
        "Performance Insights": {"Database"},
        "Secrets Manager": {"Secrets"},
        "transaction-log archiver": {"TxlogIntegrity"},
        "EFS": {"FileSystem"},
        "AWS Backup": {"Backup"},
    }
    trail = {r.request.action: r.request.context for r in requirements if r.service == "CloudTrail"}
    assert trail == {
        "kms:GenerateDataKey": {
            "aws:SourceArn": TRAIL_ARN,
            "kms:EncryptionContext:aws:cloudtrail:arn": TRAIL_ARN,
        },
        "kms:DescribeKey": {"aws:SourceArn": TRAIL_ARN},
        # The trail bucket uses an S3 Bucket Key.
        "kms:Decrypt": {"aws:SourceArn": TRAIL_ARN},
    }


@pytest.mark.control("SC-12")
def test_fault_3_original_cloudtrail_statement_fails_the_key_requirements(synth: Synth) -> None:
    """Fault 3: CloudTrail's kms:DescribeKey sat only under a
    kms:EncryptionContext:aws:cloudtrail:arn condition, which a DescribeKey request never
    carries; CreateTrail could fail with InsufficientEncryptionPolicyException."""
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _key(templates, "AuditKey")
    policy["Statement"] = [
        s for s in policy["Statement"] if not str(s.get("Sid", "")).startswith("CloudTrail")
    ]
    policy["Statement"].append(
        {
            "Sid": "UseByServicePrincipal0",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": [
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:Encrypt",
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
            ],
            "Resource": "*",
            "Condition": {
                "StringLike": {
                    "kms:EncryptionContext:aws:cloudtrail:arn": {
                        "Fn::Join": [
                            "",
                            [
                                "arn:",
                                {"Ref": "AWS::Partition"},
                                ":cloudtrail:*:",
                                {"Ref": "AWS::AccountId"},
                                ":trail/*",
                            ],
                        ]
                    }
                }
            },
        }
    )
    assert texts(key_requirement_findings(templates)) == [
        f"{lid}: CloudTrail (Trail022F0CF2) needs kms:DescribeKey by cloudtrail.amazonaws.com "
        f"with aws:SourceArn={TRAIL_ARN}: no statement allows it (see {CLOUDTRAIL_DOC})",
        f"{lid}: CloudTrail (Trail022F0CF2) needs kms:Decrypt by cloudtrail.amazonaws.com "
        f"with aws:SourceArn={TRAIL_ARN}: no statement allows it (see {CLOUDTRAIL_DOC})",
    ]


def test_twin_a_publisher_without_its_statement_cannot_publish(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _key(templates, "AlarmsKey")
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "PublishRdsEvents"]
    topic = "AlarmTopicD01E77F9"
    assert texts(key_requirement_findings(templates)) == [
        f"{lid}: SNS publisher events.rds.amazonaws.com ({topic}) needs {action} by "
        f"events.rds.amazonaws.com: no statement allows it (see {SNS_DOC})"
        for action in ("kms:GenerateDataKey", "kms:Decrypt")
    ]


def test_twin_a_publisher_condition_its_requests_do_not_carry_fails(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _key(templates, "AlarmsKey")
    publish = next(s for s in policy["Statement"] if s.get("Sid") == "PublishCloudWatchAlarms")
    publish["Condition"] = {"StringEquals": {"kms:CallerAccount": {"Ref": "AWS::AccountId"}}}
    findings = texts(key_requirement_findings(templates))
    assert len(findings) == 2
    assert all(f.startswith(f"{lid}: SNS publisher cloudwatch.amazonaws.com") for f in findings)


def test_twin_logs_key_bound_to_another_account_fails_for_every_log_group(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _key(templates, "LogsKey")
    logs = next(s for s in policy["Statement"] if s.get("Sid") == "LogsEncryptLogGroups")
    logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] = (
        "arn:aws:logs:eu-central-2:999999999999:log-group:*"
    )
    findings = texts(key_requirement_findings(templates))
    log_groups = {
        lid
        for template in templates.values()
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::Logs::LogGroup"
    }
    assert len(findings) == 5 * len(log_groups)
    assert all(f.startswith(f"{lid}: CloudWatch Logs (") for f in findings)


def test_twin_secrets_key_through_the_wrong_service_fails(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _key(templates, "SecretsKey")
    for statement in policy["Statement"]:
        via = statement.get("Condition", {}).get("StringEquals", {})
        if "kms:ViaService" in via:
            via["kms:ViaService"] = "rds.eu-central-2.amazonaws.com"
    findings = texts(key_requirement_findings(templates))
    assert len(findings) == 4  # two secrets, GenerateDataKey and Decrypt each
    assert all(f.startswith(f"{lid}: Secrets Manager (") for f in findings)
    assert f"by {ACCOUNT_ROLE} with " in findings[0]
    assert "kms:ViaService=secretsmanager.eu-central-2.amazonaws.com" in findings[0]


def test_twin_an_explicit_deny_wins(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _key(templates, "BackupKey")
    policy["Statement"].append(
        {
            "Sid": "DenyGrants",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:CreateGrant",
            "Resource": "*",
        }
    )
    [finding] = texts(key_requirement_findings(templates))
    assert finding.startswith(f"{lid}: AWS Backup (Vault23237E5B) needs kms:CreateGrant by ")
    assert ": explicitly denied by statement DenyGrants (see " in finding


def test_twin_an_operator_the_evaluator_does_not_model_is_a_finding(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _key(templates, "FileSystemKey")
    use = next(s for s in policy["Statement"] if s.get("Sid") == "UseThroughServices")
    use["Condition"]["NumericLessThan"] = {"kms:RecipientAttestation:ImageSha384": "1"}
    assert texts(key_requirement_findings(templates)) == [
        f"{lid}: the key policy uses condition operator NumericLessThan, which the key-policy "
        "evaluator does not model, so EFS (FileSystem8A8E25C0) cannot be shown to be allowed; "
        "use the operators of govdr.compliance.policy_eval.SUPPORTED_OPERATORS"
    ]


def test_twin_a_key_reference_outside_the_synthesis_is_a_finding(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    topic = templates["monitoring"]["Resources"]["AlarmTopicD01E77F9"]["Properties"]
    topic["KmsMasterKeyId"] = "alias/aws/sns"
    assert texts(key_requirement_findings(templates)) == [
        "AlarmTopicD01E77F9: KmsMasterKeyId names a key that is not in the synthesis"
    ]


def test_with_an_existing_trail_the_audit_key_grants_cloudtrail_nothing(
    org_trail_synth: Synth,
) -> None:
    templates = org_trail_synth.all_raw()
    _, policy = _key(templates, "AuditKey")
    assert [s["Sid"] for s in policy["Statement"]] == ["KeyAdministration", "UseThroughServices"]
    requirements, _ = key_requirements(templates)
    assert "CloudTrail" not in {r.service for r in requirements}
    assert run_own_checks(org_trail_synth.config, templates) == []


# The evaluator on its own: the condition semantics the key policies rely on.

KEY = "arn:aws:kms:eu-central-2:123456789012:key/k"
ROLE = "arn:aws:iam::123456789012:role/r"


def _allow(**statement: Any) -> dict[str, Any]:
    return {"Statement": [{"Effect": "Allow", "Resource": "*", **statement}]}


def test_account_root_names_every_principal_of_the_account_only() -> None:
    policy = _allow(Principal={"AWS": "arn:aws:iam::123456789012:root"}, Action="kms:*")
    assert evaluate(policy, Request("AWS", ROLE, "kms:Decrypt", KEY)).allowed
    other = "arn:aws:iam::999999999999:role/r"
    assert not evaluate(policy, Request("AWS", other, "kms:Decrypt", KEY)).allowed
    assert not evaluate(
        policy, Request("Service", "logs.amazonaws.com", "kms:Decrypt", KEY)
    ).allowed
    by_id = _allow(Principal={"AWS": "123456789012"}, Action="kms:Decrypt")
    assert evaluate(by_id, Request("AWS", ROLE, "kms:Decrypt", KEY)).allowed


def test_actions_match_wildcards_case_insensitively_and_not_action_excludes() -> None:
    policy = _allow(Principal="*", Action="kms:GenerateDataKey*")
    assert evaluate(
        policy, Request("AWS", ROLE, "KMS:generatedatakeywithoutplaintext", KEY)
    ).allowed
    assert not evaluate(policy, Request("AWS", ROLE, "kms:Decrypt", KEY)).allowed
    not_action = _allow(Principal="*", NotAction=["kms:Decrypt"])
    assert not evaluate(not_action, Request("AWS", ROLE, "kms:Decrypt", KEY)).allowed
    assert evaluate(not_action, Request("AWS", ROLE, "kms:Encrypt", KEY)).allowed


def test_resource_must_match() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": ROLE}]}
    assert not evaluate(policy, Request("AWS", ROLE, "kms:Decrypt", KEY)).allowed


@pytest.mark.parametrize(
    ("operator", "expected", "context", "holds"),
    [
        ("StringEquals", "a", {"k": "a"}, True),
        ("StringEquals", "a", {"k": "A"}, False),
        ("StringEqualsIgnoreCase", "a", {"k": "A"}, True),
        ("StringEquals", "a", {}, False),
        ("StringNotEquals", "a", {}, True),  # a negated operator holds for a missing key
        ("StringNotEquals", "a", {"k": "a"}, False),
        ("StringNotEqualsIgnoreCase", "a", {"k": "A"}, False),
        ("StringEqualsIfExists", "a", {}, True),
        ("StringLike", "arn:*:x?z", {"k": "arn:aws:xyz"}, True),
        ("StringLike", "a*", {"k": "ba"}, False),
        ("StringNotLike", "a*", {"k": "ba"}, True),
        ("ArnLike", "arn:aws:logs:*:1:log-group:*", {"k": "arn:aws:logs:r:1:log-group:g"}, True),
        ("ArnLike", "arn:aws:logs:*:1:log-group:*", {"k": "arn:aws:logs:r:2:log-group:g"}, False),
        ("ArnLike", "arn:aws:logs:*", {"k": "not-an-arn"}, False),
        ("ArnEquals", "arn:aws:s3:::b", {"k": "arn:aws:s3:::b"}, True),
        ("ArnNotLike", "arn:aws:s3:::b*", {"k": "arn:aws:s3:::c"}, True),
        ("Bool", "false", {"k": False}, True),
        ("Bool", "true", {"k": "false"}, False),
        ("Null", "true", {}, True),
        ("Null", "false", {}, False),
        ("Null", "false", {"k": "x"}, True),
        ("ForAnyValue:StringEquals", ["a", "b"], {"k": ["c", "b"]}, True),
        ("ForAnyValue:StringEquals", ["a"], {}, False),
        ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a", "c"]}, False),
        ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a", "b"]}, True),
        ("ForAllValues:StringEquals", ["a"], {}, True),
        ("StringEquals", ["a", "b"], {"K": "b"}, True),  # keys are case-insensitive
    ],
)
def test_condition_operators(operator: str, expected: Any, context: Any, holds: bool) -> None:
    assert condition_holds(operator, "k", expected, context) is holds


@pytest.mark.parametrize(
    "operator",
    ["NumericLessThan", "DateGreaterThan", "IpAddress", "Foo:StringEquals", "NullIfExists"],
)
def test_unmodelled_operators_raise_never_allow(operator: str) -> None:
    with pytest.raises(UnsupportedPolicy, match="condition operator"):
        condition_holds(operator, "k", "1", {"k": "1"})


def test_unmodelled_elements_raise() -> None:
    request = Request("AWS", ROLE, "kms:Decrypt", KEY)
    with pytest.raises(UnsupportedPolicy, match="NotPrincipal"):
        evaluate({"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": ROLE}}]}, request)
    with pytest.raises(UnsupportedPolicy, match="Effect"):
        evaluate({"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "*"}]}, request)
    with pytest.raises(UnsupportedPolicy, match="without Action"):
        evaluate({"Statement": [{"Effect": "Allow", "Principal": "*"}]}, request)
    with pytest.raises(UnsupportedPolicy, match="condition block"):
        evaluate(_allow(Principal="*", Action="*", Condition={"StringEquals": "x"}), request)


def _archiver_env(templates: dict[str, Any]) -> dict[str, Any]:
    storage = templates["storage"]["Resources"]
    [function] = [
        r
        for r in storage.values()
        if r["Type"] == "AWS::Lambda::Function"
        and "INTEGRITY_KEY_ARN" in r["Properties"].get("Environment", {}).get("Variables", {})
    ]
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


@pytest.mark.control("SI-7")
def test_twin_an_archiver_of_another_slot_cannot_open_the_archive_key(synth: Synth) -> None:
    """The integrity key's policy admits only requests whose encryption context names this
    environment's slot: the archiver configured with another slot is refused both actions."""
    templates = copy.deepcopy(synth.all_raw())
    lid, _ = _key(templates, "TxlogIntegrityKey")
    _archiver_env(templates)["SLOT_NAME"] = "govdr_txlog_prod"
    findings = texts(key_requirement_findings(templates))
    assert len(findings) == 2
    assert all(f.startswith(f"{lid}: transaction-log archiver") for f in findings)
    assert "kms:GenerateDataKey" in findings[0] and "kms:Decrypt" in findings[1]


def test_twin_an_integrity_key_without_the_account_statement_refuses_the_archiver(
    synth: Synth,
) -> None:
    templates = copy.deepcopy(synth.all_raw())
    _, policy = _key(templates, "TxlogIntegrityKey")
    policy["Statement"] = [
        s for s in policy["Statement"] if s.get("Sid") != "ArchiveIntegrityKeysOfThisEnvironment"
    ]
    assert len(texts(key_requirement_findings(templates))) == 2
