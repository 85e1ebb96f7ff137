"""No deployed function can connect to the database with weaker TLS than verify-full.

The functions that can open a database connection are those whose bundle carries psycopg2
(govdr/constructs/python_bundle.py). govdr/lambda_support/pg_tls.py always names
sslmode=verify-full, the pinned roots and require_auth in the DSN; the template must not carry a
setting that says otherwise (PGSSLMODE=require was the old default), nor one that swaps the pinned
roots.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from govdr.compliance.templates import resources
from govdr.lambda_support.pg_tls import ROOT_CERT_ENV
from tests.conftest import TEST_SUFFIX, Synth

# libpq reads these from the environment; a DSN keyword wins, but none may be set anyway.
LIBPQ_TLS_SETTINGS = ("PGSSLMODE", "PGSSLROOTCERT", "PGREQUIREAUTH", "PGSSLNEGOTIATION")
VERIFIED = "verify-full"
# The functions that connect to the database (their handlers open connections).
DATABASE_FUNCTIONS = {"txlog-archiver", "txlog-bootstrap", "rds-rotation", "rds-txlog-rotation"}


def _bundle(function: dict[str, Any], outdir: Path) -> Path | None:
    key = function["Properties"].get("Code", {}).get("S3Key")
    if not isinstance(key, str):
        return None
    return outdir / f"asset.{key.removesuffix('.zip')}"


def database_functions(template: dict[str, Any], outdir: Path) -> dict[str, dict[str, Any]]:
    """The functions of ``template`` whose bundle can connect to PostgreSQL, by name."""
    found: dict[str, dict[str, Any]] = {}
    for lid, function in resources(template, "AWS::Lambda::Function"):
        bundle = _bundle(function, outdir)
        if bundle is not None and (bundle / "psycopg2").is_dir():
            name = function["Properties"].get("FunctionName", lid)
            found[str(name).removesuffix(f"-{TEST_SUFFIX}")] = function
    return found


def tls_problems(template: dict[str, Any], outdir: Path) -> list[str]:
    """Why a database function of ``template`` might connect with less than verify-full."""
    problems: list[str] = []
    for name, function in database_functions(template, outdir).items():
        env = function["Properties"].get("Environment", {}).get("Variables", {})
        mode = env.get("PGSSLMODE")
        if mode is not None and mode != VERIFIED:
            problems.append(f"{name}: PGSSLMODE={json.dumps(mode)} is weaker than {VERIFIED}")
        for setting in (*LIBPQ_TLS_SETTINGS[1:], ROOT_CERT_ENV):
            if setting in env:
                problems.append(f"{name}: {setting} overrides the verified TLS of pg_tls")
        bundle = _bundle(function, outdir)
        assert bundle is not None
        for shipped in ("pg_tls.py", "rds-ca-eu-central-2.pem"):
            if not (bundle / "govdr" / "lambda_support" / shipped).is_file():
                problems.append(f"{name}: the bundle lacks govdr/lambda_support/{shipped}")
    return problems


def test_every_database_function_verifies_the_server(synth: Synth) -> None:
    templates = synth.all_raw()
    found: set[str] = set()
    for template in templates.values():
        assert tls_problems(template, synth.outdir) == []
        found |= set(database_functions(template, synth.outdir))
    assert found >= DATABASE_FUNCTIONS
    # None of them carries a libpq TLS setting at all.
    for template in templates.values():
        for function in database_functions(template, synth.outdir).values():
            env = function["Properties"].get("Environment", {}).get("Variables", {})
            assert not set(env) & {*LIBPQ_TLS_SETTINGS, ROOT_CERT_ENV}


def _mutated(synth: Synth, function_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for template in synth.all_raw().values():
        for name, function in database_functions(template, synth.outdir).items():
            if name == function_name:
                mutated = copy.deepcopy(template)
                [target] = [
                    f
                    for _, f in resources(mutated, "AWS::Lambda::Function")
                    if f["Properties"]["FunctionName"] == function["Properties"]["FunctionName"]
                ]
                return mutated, target
    raise AssertionError(f"{function_name} not found")


def test_a_template_with_sslmode_require_is_rejected(synth: Synth) -> None:
    """The failing twin: the old setting, put back into each database function in turn."""
    for name in sorted(DATABASE_FUNCTIONS):
        template, function = _mutated(synth, name)
        variables = function["Properties"].setdefault("Environment", {}).setdefault("Variables", {})
        variables["PGSSLMODE"] = "require"
        assert tls_problems(template, synth.outdir) == [
            f'{name}: PGSSLMODE="require" is weaker than verify-full'
        ]
        variables["PGSSLMODE"] = VERIFIED
        assert tls_problems(template, synth.outdir) == []
        variables[ROOT_CERT_ENV] = "/tmp/other-ca.pem"
        assert tls_problems(template, synth.outdir) == [
            f"{name}: {ROOT_CERT_ENV} overrides the verified TLS of pg_tls"
        ]


def test_a_bundle_without_the_pinned_roots_is_rejected(synth: Synth, tmp_path: Path) -> None:
    """The twin of the bundle check: the archiver's asset copied without the CA file."""
    template, function = _mutated(synth, "txlog-archiver")
    bundle = _bundle(function, synth.outdir)
    assert bundle is not None
    copied = tmp_path / "asset.copy"
    support = Path("govdr") / "lambda_support"
    (copied / support).mkdir(parents=True)
    (copied / "psycopg2").mkdir()
    (copied / support / "pg_tls.py").write_bytes((bundle / support / "pg_tls.py").read_bytes())
    function["Properties"]["Code"]["S3Key"] = "copy.zip"
    # Only the copied asset is under tmp_path: the other functions are not looked at.
    assert tls_problems(template, tmp_path) == [
        "txlog-archiver: the bundle lacks govdr/lambda_support/rds-ca-eu-central-2.pem"
    ]
