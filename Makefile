# govdr: every target installs what it needs first (Python venv, pinned Node CLI).
SHELL := /bin/bash
.DEFAULT_GOAL := help

SUFFIX ?= $(or $(ENVIRONMENT_SUFFIX),dev)
STACK := TapStack$(SUFFIX)
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
# checkov (the template scanner) lives in its own venv: its dependencies never move the product's.
CHECKOV_VENV := .checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
export GOVDR_CHECKOV := $(CURDIR)/$(CHECKOV_VENV)/bin/checkov
NODE_STAMP := node_modules/.installed
CDK := node_modules/.bin/cdk
CDK_FLAGS := -c environmentSuffix=$(SUFFIX)

# The pinned Node 22 (npm package `node`) and the venv come first on PATH, so jsii and the
# CDK CLI never run on the machine's end-of-life Node 20.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: help install postgres synth test lint format compliance outputs deploy destroy lock clean \
	deploy-local destroy-local emulator-stop integ bench-archive preflight figures timings lock-checkov

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(PY_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP) ## create the venvs and install pinned Python and Node deps

# uv (pinned) installs the locked set in seconds where pip needs a minute and a half.
UV_VERSION := 0.13.8
$(PY_STAMP): requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/uv pip install --quiet -r requirements.lock
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/uv pip install --quiet --no-deps -e .
	@touch $@

$(CHECKOV_STAMP): requirements-checkov.lock $(PY_STAMP)
	python3 -m venv $(CHECKOV_VENV)
	VIRTUAL_ENV=$(CURDIR)/$(CHECKOV_VENV) $(VENV)/bin/uv pip install --quiet -r requirements-checkov.lock
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

synth: install ## synthesize TapStack$(SUFFIX) into cdk.out/ and print a summary
	rm -rf cdk.out
	$(CDK) synth --quiet $(CDK_FLAGS)
	$(PY) -m govdr.compliance.checkov_scan cdk.out
	@$(PY) -m govdr.tools.summary cdk.out

test: install lint postgres ## lint, then the whole test suite (coverage of govdr/ >= 90 % enforced)
	$(PY) -m pytest

postgres: ## install PostgreSQL 15 + wal2json for the runtime tests if missing (apt-get as root, else says how)
	@scripts/ensure-postgres

compliance: install ## regenerate docs/compliance/fedramp-moderate.{md,json} from a synth
	$(PY) -m govdr.tools.compliance_matrix --out docs/compliance

bench-archive: install postgres ## archiver vs pg_recvlogical on 200,000 pgbench transactions -> bench/results/archive.json (BENCH_ARGS="--help" for options)
	$(PY) bench/archive_bench.py $(BENCH_ARGS)

figures: install ## render the README's measured figures from bench/results/*.json
	$(PY) -m govdr.tools.figures

timings: install ## time synth, deploy-local and test into bench/results/timings.json, then `make figures` (STEPS=ci_fresh_clone for a fresh-clone .ci/run)
	$(PY) -m govdr.tools.timings $(if $(STEPS),--steps $(STEPS))
	$(PY) -m govdr.tools.figures

lint: install ## ruff (lint, complexity, format check), mypy and the import-layering contracts
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

format: install ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

deploy-local: synth ## preflight against the embedded AWS emulator, deploy onto it, verify, summarize (KEEP=1 keeps it)
	$(PY) -m govdr_emulator.deploy --suffix $(SUFFIX) $(if $(KEEP),--keep)

destroy-local: install ## delete the stack from the kept emulator and prove nothing is left
	$(PY) -m govdr_emulator.deploy --suffix $(SUFFIX) --destroy

emulator-stop: install ## stop the emulator kept by `make deploy-local KEEP=1`
	$(PY) -m govdr_emulator.deploy --stop

integ: install ## integration tests against a real deployment (cfn-outputs/flat-outputs.json + credentials)
	GOVDR_OUTPUTS=cfn-outputs/flat-outputs.json $(PY) -m pytest tests/integration --no-cov -p no:cacheprovider

preflight: synth ## read-only checks of the target account and region for TapStack$(SUFFIX) (PREFLIGHT_ARGS="--json")
	$(PY) -m govdr.cli.main preflight --suffix $(SUFFIX) --cdk-out cdk.out $(PREFLIGHT_ARGS)

# The deploy takes the assembly preflight checked (--app cdk.out), so both see the same templates.
deploy: preflight ## preflight (a FAIL stops), deploy to the AWS account of your credentials, write the flat outputs
	mkdir -p cfn-outputs
	$(CDK) deploy $(STACK) --app cdk.out --require-approval never \
		--outputs-file cfn-outputs/cdk-outputs.json
	$(PY) -m govdr.tools.outputs --stack $(STACK) --from-file cfn-outputs/cdk-outputs.json

outputs: install ## write cfn-outputs/flat-outputs.json from the deployed stack (AWS API)
	$(PY) -m govdr.tools.outputs --stack $(STACK)

destroy: install ## delete TapStack$(SUFFIX) and everything in it
	$(CDK) destroy $(STACK) $(CDK_FLAGS) --force

lock-checkov: install ## re-resolve requirements-checkov.lock (CHECKOV_VERSION=...) in a scratch venv
	rm -rf .lockvenv && python3 -m venv .lockvenv
	VIRTUAL_ENV=$(CURDIR)/.lockvenv $(VENV)/bin/uv pip install --quiet checkov==$(or $(CHECKOV_VERSION),$(shell sed -n 's/^checkov==//p' requirements-checkov.lock))
	{ echo '# checkov (template scanner of `make synth` and the suite) and its exact dependencies, in their'; \
	  echo '# own venv (.checkov-venv) so they never move the product pins. Regenerate: make lock-checkov'; \
	  VIRTUAL_ENV=$(CURDIR)/.lockvenv $(VENV)/bin/uv pip freeze; } > requirements-checkov.lock
	rm -rf .lockvenv

lock: ## re-resolve requirements.lock from pyproject.toml in a scratch venv
	rm -rf .lockvenv && python3 -m venv .lockvenv
	.lockvenv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	VIRTUAL_ENV=$(CURDIR)/.lockvenv .lockvenv/bin/uv pip install --quiet -e '.[dev]'
	{ echo '# Exact versions of every Python package (direct and transitive), installed by `make install`.'; \
	  echo '# Regenerate after changing pyproject.toml: make lock'; \
	  VIRTUAL_ENV=$(CURDIR)/.lockvenv .lockvenv/bin/uv pip freeze --exclude-editable | grep -v '^uv=='; } > requirements.lock
	{ sed -n '1,3p' govdr/lambda_support/lambda-requirements.txt; \
	  .lockvenv/bin/uv pip compile govdr/lambda_support/lambda-requirements.in --quiet --no-header \
	    --python-platform aarch64-manylinux_2_28 --python-version 3.14 --generate-hashes; } \
	  > govdr/lambda_support/lambda-requirements.txt.new && mv govdr/lambda_support/lambda-requirements.txt.new govdr/lambda_support/lambda-requirements.txt
	rm -rf .lockvenv

clean: ## remove build output (keeps the venv and node_modules)
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
