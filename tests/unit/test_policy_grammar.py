"""Policy grammar: parliament over every policy document, with failing twins."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from govdr.compliance.finding import texts
from govdr.compliance.gate import RULE_FIXES, run_own_checks, synth_checks
from govdr.compliance.policies import Resolver, policy_documents, statements
from govdr.compliance.policy_grammar import lint_statement, policy_grammar_findings
from govdr.constructs.policy_notes import METADATA_KEY
from tests.conftest import Synth


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _resource(templates: dict[str, Any], logical_prefix: str) -> tuple[str, dict[str, Any]]:
    for template in templates.values():
        for lid, resource in template["Resources"].items():
            if lid.startswith(logical_prefix):
                return lid, resource
    raise AssertionError(f"no resource {logical_prefix}*")


def _statement(resource: dict[str, Any], sid: str) -> dict[str, Any]:
    document = resource["Properties"].get("KeyPolicy") or resource["Properties"]["PolicyDocument"]
    return next(s for s in document["Statement"] if s.get("Sid") == sid)


def test_policy_grammar_is_a_synth_wide_gate_rule(synth: Synth) -> None:
    assert synth_checks(synth.config)["policy-grammar"] is policy_grammar_findings
    assert "policy_notes" in RULE_FIXES["policy-grammar"]


def test_every_synthesized_policy_passes_the_grammar(synth: Synth) -> None:
    assert texts(policy_grammar_findings(synth.all_raw())) == []


def test_every_kind_of_policy_is_collected(synth: Synth) -> None:
    documents = policy_documents(synth.all_raw())
    kinds = {(d.resource_type, d.kind) for d in documents}
    assert kinds == {
        ("AWS::Backup::BackupVault", "resource"),
        ("AWS::IAM::Role", "trust"),
        ("AWS::IAM::Role", "identity"),  # CDK's custom-resource provider roles
        ("AWS::IAM::ManagedPolicy", "identity"),
        ("AWS::KMS::Key", "key"),
        ("AWS::S3::BucketPolicy", "resource"),
        ("AWS::SNS::TopicPolicy", "resource"),
        ("AWS::EFS::FileSystem", "resource"),
        ("AWS::SecretsManager::ResourcePolicy", "resource"),
        ("AWS::Lambda::Permission", "resource"),
    }
    assert len([d for d in documents if d.kind == "key"]) == 8


def test_inline_role_policies_and_vault_access_policies_are_collected() -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "backup:ListBackupVaults", "Resource": "*"}],
    }
    template = {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": document}]},
            },
            "Vault": {"Type": "AWS::Backup::BackupVault", "Properties": {"AccessPolicy": document}},
            "Inline": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": document}},
            "Logs": {
                "Type": "AWS::Logs::ResourcePolicy",
                "Properties": {"PolicyDocument": json.dumps(document)},
            },
        }
    }
    found = {(d.logical_id, d.where, d.kind) for d in policy_documents({"t": template})}
    assert found == {
        ("Role", "Policies[0].PolicyDocument", "identity"),
        ("Vault", "AccessPolicy", "resource"),
        ("Inline", "PolicyDocument", "identity"),
        ("Logs", "PolicyDocument", "resource"),
    }


def test_intrinsics_resolve_to_placeholders_of_the_right_shape(synth: Synth) -> None:
    documents = policy_documents(synth.all_raw())
    for document in documents:
        leaves = _leaves(document.document)
        assert all(isinstance(leaf, str | bool) for leaf in leaves), document.logical_id
        text = json.dumps(document.document)
        assert "Fn::" not in text and '"Ref"' not in text, document.logical_id
    archiver = next(d for d in documents if d.logical_id.startswith("TxlogArchiverRolePolicy"))
    by_sid = {s["Sid"]: s for s in statements(archiver.document)}
    # A nested-stack parameter is followed to the output of the stack that defines it.
    assert by_sid["DecryptDatabaseSecret"]["Resource"] == (
        "arn:aws:kms:eu-central-2:123456789012:key/secretskey0d2ec683"
    )
    assert by_sid["ReadDatabaseSecret"]["Resource"].startswith(
        "arn:aws:secretsmanager:eu-central-2:123456789012:secret:ReplicationSecret"
    )
    assert by_sid["WriteOwnLogs"]["Resource"].startswith(
        "arn:aws:logs:eu-central-2:123456789012:log-group:TxlogArchiverLogGroup"
    )


def test_resolver_handles_sub_select_split_and_pseudo_parameters() -> None:
    template = {
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic"},
            "Bucket": {"Type": "AWS::S3::Bucket"},
        }
    }
    resolver = Resolver({"t": template})
    assert resolver.resolve("t", {"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}"}) == (
        "arn:aws:x:eu-central-2"
    )
    assert resolver.resolve("t", {"Fn::Sub": ["${A}/${Bucket.Arn}", {"A": {"Ref": "Topic"}}]}) == (
        "arn:aws:sns:eu-central-2:123456789012:Topic/arn:aws:s3:::bucket"
    )
    assert resolver.resolve("t", {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert resolver.resolve("t", {"Fn::Sub": "${!Literal}"}) == "${Literal}"


def test_twin_unknown_action_is_reported(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _resource(templates, "TxlogArchiverRolePolicy")
    _statement(policy, "DecryptDatabaseSecret")["Action"] = "kms:DecryptEverything"
    assert texts(policy_grammar_findings(templates)) == [
        f"{lid}: PolicyDocument statement DecryptDatabaseSecret: UNKNOWN_ACTION "
        "Unknown action kms:DecryptEverything"
    ]


def test_twin_the_gate_reports_a_grammar_finding_under_its_rule(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, policy = _resource(templates, "RpoMonitorRolePolicy")
    policy["Properties"]["PolicyDocument"]["Statement"][0]["Action"] = "rds:DescribeDBInstance"
    results = run_own_checks(synth.config, templates)
    assert [(rule, str(finding)) for rule, _, finding in results] == [
        (
            "policy-grammar",
            f"{lid}: PolicyDocument statement DescribeTheDatabase: UNKNOWN_ACTION "
            "Unknown action rds:DescribeDBInstance",
        )
    ]
    # The finding is a value: the resource, the rule and its fix, not text to parse back.
    [(_, _, finding)] = results
    assert (finding.logical_id, finding.rule) == (lid, "policy-grammar")
    assert finding.fix == RULE_FIXES["policy-grammar"]


def test_twin_condition_key_that_does_not_apply_is_reported(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, key = _resource(templates, "DatabaseKey")
    use = _statement(key, "UseThroughServices")
    use["Action"] = "kms:Decrypt"
    use["Condition"]["StringLike"] = {"s3:prefix": "logs/*"}
    assert texts(policy_grammar_findings(templates)) == [
        f"{lid}: KeyPolicy statement UseThroughServices: UNKNOWN_CONDITION_FOR_ACTION "
        "Unknown condition s3:prefix for action kms:Decrypt"
    ]


def test_twin_type_mismatch_is_reported(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, key = _resource(templates, "BackupKey")
    use = _statement(key, "UseThroughServices")
    use["Condition"]["NumericLessThan"] = {"kms:ViaService": "5"}
    assert texts(policy_grammar_findings(templates)) == [
        f"{lid}: KeyPolicy statement UseThroughServices: MISMATCHED_TYPE "
        "Type mismatch: NumericLessThan requires a value of type Number but given String"
    ]


def test_twin_unknown_service_prefix_and_operator_are_reported() -> None:
    assert lint_statement({"Effect": "Allow", "Action": "kmz:Decrypt", "Resource": "*"}) == [
        ("UNKNOWN_PREFIX", "Unknown prefix kmz")
    ]
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringFoo": {"kms:ViaService": "x"}},
    }
    assert ("UNKNOWN_OPERATOR", "StringFoo") in lint_statement(statement)


@pytest.mark.control("AC-6")
def test_fault_3_original_cloudtrail_statement_fails_the_grammar(synth: Synth) -> None:
    """Fault 3: kms:DescribeKey for cloudtrail.amazonaws.com sat only under a
    kms:EncryptionContext:aws:cloudtrail:arn condition, which DescribeKey never carries."""
    templates = copy.deepcopy(synth.all_raw())
    lid, key = _resource(templates, "AuditKey")
    describe = _statement(key, "CloudTrailDescribeKey")
    describe["Condition"] = {
        "StringLike": {
            "kms:EncryptionContext:aws:cloudtrail:arn": "arn:aws:cloudtrail:*:123456789012:trail/*"
        }
    }
    assert texts(policy_grammar_findings(templates)) == [
        f"{lid}: KeyPolicy statement CloudTrailDescribeKey: UNKNOWN_CONDITION_FOR_ACTION "
        "Unknown condition kms:EncryptionContext:aws:cloudtrail:arn for action kms:DescribeKey"
    ]


def test_accepted_findings_are_noted_on_the_resource_with_their_reason(synth: Synth) -> None:
    templates = synth.all_raw()
    _, logs_key = _resource(templates, "LogsKey")
    [note] = logs_key["Metadata"][METADATA_KEY]
    assert note["sid"] == "LogsEncryptLogGroups"
    assert note["issue"] == "MISMATCHED_TYPE"
    assert "encrypt-log-data-kms.html" in note["reason"]
    for prefix in ("TrailBucketPolicy", "AccessLogBucketPolicy"):
        _, bucket_policy = _resource(templates, prefix)
        [note] = bucket_policy["Metadata"][METADATA_KEY]
        assert note == {
            "issue": "RESOURCE_MISMATCH",
            "action": "s3:List*",
            "reason": note["reason"],
        }
        assert "autoDeleteObjects" in note["reason"]


def test_twin_without_its_note_the_documented_logs_pattern_is_reported(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, logs_key = _resource(templates, "LogsKey")
    del logs_key["Metadata"][METADATA_KEY]
    assert texts(policy_grammar_findings(templates)) == [
        f"{lid}: KeyPolicy statement LogsEncryptLogGroups: MISMATCHED_TYPE "
        "Type mismatch: ArnLike requires a value of type Arn but given String"
    ]


def test_twin_a_note_without_reason_or_for_another_issue_accepts_nothing(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, bucket_policy = _resource(templates, "TrailBucketPolicy")
    bucket_policy["Metadata"][METADATA_KEY] = [
        {"issue": "RESOURCE_MISMATCH", "action": "s3:List*", "reason": " "},
        {"issue": "UNKNOWN_ACTION", "action": "s3:List*", "reason": "other issue"},
    ]
    [finding] = texts(policy_grammar_findings(templates))
    assert finding.startswith(f"{lid}: PolicyDocument statement #1: RESOURCE_MISMATCH ")
    assert "s3:ListAllMyBuckets" in finding


def test_twin_duplicate_sid_is_reported(synth: Synth) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, key = _resource(templates, "SecretsKey")
    key["Properties"]["KeyPolicy"]["Statement"][1]["Sid"] = "KeyAdministration"
    assert texts(policy_grammar_findings(templates)) == [
        f"{lid}: KeyPolicy statement KeyAdministration: DUPLICATE_SID"
    ]


def test_trust_and_file_system_policies_are_linted_with_their_implied_resource(
    synth: Synth,
) -> None:
    templates = copy.deepcopy(synth.all_raw())
    lid, file_system = _resource(templates, "FileSystem8")
    file_system["Properties"]["FileSystemPolicy"]["Statement"][1]["Action"].append(
        "elasticfilesystem:ClientTeleport"
    )
    assert texts(policy_grammar_findings(templates)) == [
        f"{lid}: FileSystemPolicy statement #1: UNKNOWN_ACTION "
        "Unknown action elasticfilesystem:ClientTeleport"
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sid": "A", "action": "s3:*", "reason": "r"}, "exactly one of sid or action"),
        ({"sid": "A", "reason": " "}, "must give its reason"),
    ],
)
def test_policy_note_needs_one_statement_and_a_reason(kwargs: Any, message: str) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_sns as sns

    from govdr.constructs.policy_notes import accept

    topic = sns.Topic(cdk.Stack(cdk.App()), "T")
    with pytest.raises(ValueError, match=message):
        accept(topic, issue="MALFORMED", **kwargs)
