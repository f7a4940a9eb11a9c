# Cal EHR Bridge — every target installs what it needs.
#   make deps   the virtualenv (hash-pinned) with the `calehr` command, and the npm packages
#   make dev    run the bridge locally end to end (moto, Medplum FHIR engine, local API, sync worker);
#               options go through ARGS, e.g. make dev ARGS="--ehr hl7v2"
#   make test   lint + type-check + every test suite (unit, integration, e2e, infra, bench smoke)
#   make bench  the benchmarks (docs/performance.md); make bench-smoke: each with a tiny N
#   make browser  Debian's chromium for the console's browser test (installed with apt-get when missing)
#   make layout  the import graph as rooms (package folders) and arrows (imports between them)

SHELL := /bin/bash
PYTHON_VERSION := $(shell cat .python-version)
PYTHON ?= $(shell command -v python$(basename $(PYTHON_VERSION)) 2>/dev/null || \
            ls $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/$(PYTHON_VERSION)/bin/python3 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
FHIR_DIR := devstack/fhir-server
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: deps dev test lint unit integration e2e infra synth bench bench-smoke clean browser layout

# The console's end-to-end test drives headless Chromium: Debian's package, installed when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/.installed: requirements/dev.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) not found (pyenv install $(PYTHON_VERSION))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements/dev.lock
	@# this checkout itself, editable and without fetching anything: `.venv/bin/calehr` (cli/)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(FHIR_DIR)/node_modules/.installed: $(FHIR_DIR)/package-lock.json
	npm ci --prefix $(FHIR_DIR) --no-audit --no-fund --loglevel=error
	touch $@

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium (the console's browser test)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

deps: $(BIN)/.installed $(FHIR_DIR)/node_modules/.installed $(if $(wildcard package-lock.json),node_modules/.installed)

dev: deps
	$(BIN)/calehr dev $(ARGS)

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions devstack infra bench cli tools

unit: deps
	$(BIN)/pytest tests/unit -q

integration: deps
	$(BIN)/pytest tests/integration -q

e2e: deps browser
	$(BIN)/pytest tests/e2e -q

infra: deps
	$(BIN)/pytest tests/infra -q

test: deps browser lint
	$(BIN)/pytest -q

layout: deps
	$(BIN)/python -m tools.layout $(ARGS)

synth: deps
	npx cdk synth -q

# Full run (several minutes): bench/results/summary.json, then docs/performance.md and README.md from it.
bench: deps
	$(BIN)/python -m bench
	$(BIN)/python -m bench.report

# Each script with a tiny N (< 1 minute); `make test` runs it too (tests/integration/test_bench_smoke.py).
bench-smoke: deps
	$(BIN)/python -m bench --smoke

clean:
	rm -rf $(VENV) node_modules $(FHIR_DIR)/node_modules cdk.out build .devstack .mypy_cache .ruff_cache .pytest_cache
