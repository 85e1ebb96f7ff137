"""Every custom resource has a service timeout: an unanswered request fails in minutes."""

from __future__ import annotations

import copy
from typing import Any

from govdr.compliance.custom_resources import custom_resource_timeout_findings
from govdr.compliance.finding import texts
from govdr.compliance.gate import RULE_FIXES, own_checks
from govdr.constructs.custom_resources import is_custom_resource, service_timeout
from tests.conftest import Synth


def _custom_resources(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        f"{name}/{lid}": resource
        for name, template in templates.items()
        for lid, resource in template.get("Resources", {}).items()
        if is_custom_resource(resource["Type"])
    }


def test_fault_1_every_custom_resource_fails_fast(synth: Synth, prod_synth: Synth) -> None:
    """Fault 1: no custom resource set ServiceTimeout, so an unanswered request (the bootstrap
    could not reach its response URL) held the deploy for an hour, and the rollback as long."""
    for case in (synth, prod_synth):
        templates = case.all_raw()
        found = _custom_resources(templates)
        assert found, "the synthesis has custom resources"
        for name, template in templates.items():
            assert texts(custom_resource_timeout_findings(template)) == [], name
    # ServiceTimeout is a String property (1 to 3600): every one is written as a string.
    timeouts = {
        resource["Type"]: resource["Properties"]["ServiceTimeout"]
        for resource in _custom_resources(synth.all_raw()).values()
    }
    assert timeouts == {
        "Custom::TxlogBootstrap": "180",  # 120 s handler + 60 s for the response
        # 840 s handler (returns 30 s early; under the framework's 900 s) + 60 s
        "Custom::BackupVaultCleaner": "900",
        "Custom::S3AutoDeleteObjects": "960",
        "Custom::VpcRestrictDefaultSG": "960",
    }


def test_the_service_timeout_covers_the_handler_and_stays_under_the_ceiling() -> None:
    assert service_timeout(120) == 180
    assert service_timeout(900) == 960
    assert service_timeout(3000) == 960
    assert service_timeout(3) == 63


def _database(synth: Synth) -> tuple[dict[str, Any], dict[str, Any]]:
    database = copy.deepcopy(synth.raw("database"))
    return database, database["Resources"]["TxlogBootstrapCustomResource"]["Properties"]


def test_a_missing_service_timeout_fails(synth: Synth) -> None:
    database, props = _database(synth)
    del props["ServiceTimeout"]
    assert texts(custom_resource_timeout_findings(database)) == [
        "TxlogBootstrapCustomResource: no ServiceTimeout, so CloudFormation waits an hour for an "
        "answer that does not come"
    ]


def test_a_service_timeout_above_the_ceiling_fails(synth: Synth) -> None:
    database, props = _database(synth)
    props["ServiceTimeout"] = "3600"
    assert texts(custom_resource_timeout_findings(database)) == [
        "TxlogBootstrapCustomResource: ServiceTimeout '3600' is not a whole number of seconds "
        "from 1 "
        "to 960"
    ]
    props["ServiceTimeout"] = "three minutes"
    assert texts(custom_resource_timeout_findings(database)) == [
        "TxlogBootstrapCustomResource: ServiceTimeout 'three minutes' is not a whole number of "
        "seconds "
        "from 1 to 960"
    ]


def test_a_service_timeout_shorter_than_the_handler_fails(synth: Synth) -> None:
    database, props = _database(synth)
    props["ServiceTimeout"] = 60
    # The service token is the Provider framework; the timeout that counts is its handler's.
    framework = database["Resources"][props["ServiceToken"]["Fn::GetAtt"][0]]["Properties"]
    assert framework["Timeout"] == 900
    handler = framework["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"]["Fn::GetAtt"][0]
    assert database["Resources"][handler]["Properties"]["Timeout"] == 120
    assert texts(custom_resource_timeout_findings(database)) == [
        "TxlogBootstrapCustomResource: ServiceTimeout 60 s is shorter than the 120 s Lambda "
        "timeout "
        f"of its handler {handler}"
    ]


def test_a_generic_custom_resource_type_is_checked_too(synth: Synth) -> None:
    database, props = _database(synth)
    resource = database["Resources"]["TxlogBootstrapCustomResource"]
    resource["Type"] = "AWS::CloudFormation::CustomResource"
    del props["ServiceTimeout"]
    assert texts(custom_resource_timeout_findings(database)) == [
        "TxlogBootstrapCustomResource: no ServiceTimeout, so CloudFormation waits an hour for an "
        "answer that does not come"
    ]


def test_the_gate_runs_custom_resource_timeout(synth: Synth) -> None:
    assert own_checks(synth.config)["custom-resource-timeout"] is custom_resource_timeout_findings
    assert "custom-resource-timeout" in RULE_FIXES
