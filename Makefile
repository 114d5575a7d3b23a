# Jobline developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PKGS   := libs/common[cli,embedded] services/gateway services/outbox-relay services/worker services/ai-analyzer
INPUTS := constraints.txt requirements-dev.txt libs/common/pyproject.toml $(wildcard services/*/pyproject.toml)
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Some machines' pip config names local index folders that may not exist; pip warns about
# each one on every install. Drop only those lines, keep every real error.
QUIET_PIP := { grep -v "^WARNING: Location '" || true; }

.PHONY: help install run test test-unit test-integration test-e2e test-faults lint bench bench-flow bench-retention eval-analyzer clean \
	deploy-check promtool env-file helm-template test-scale test-upgrade browser test-browser vendor-assets bench-console bench-workflows

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}'

# The stamp is newer than every input once an install succeeded, so an unchanged
# checkout skips pip entirely.
$(STAMP): $(INPUTS)
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) ..."
	@set -o pipefail; $(PY) -m pip install -q -c constraints.txt pip setuptools wheel 2>&1 | $(QUIET_PIP)
	@set -o pipefail; $(PY) -m pip install -q --no-build-isolation -c constraints.txt \
		-r requirements-dev.txt $(foreach p,$(PKGS),-e $(p)) 2>&1 | $(QUIET_PIP)
	@touch $@

install: $(STAMP) ## create .venv and install the pinned dependencies

run: $(STAMP) ## start PostgreSQL, the broker and all four services (Ctrl-C stops everything)
	@$(VENV)/bin/jobline dev

# deploy-check first; a failure there fails the target but does not skip the rest. The
# browser tests need Chromium: `make browser` unpacks it first (a no-op once it is there).
test: $(STAMP) ## run the whole suite (deploy-check, unit, integration, e2e, faults, browser)
	@status=0; $(MAKE) --no-print-directory deploy-check || status=1; \
	$(MAKE) --no-print-directory browser || status=1; \
	$(PY) -m pytest --ignore=tests/deploy $(PYTEST_ARGS) || status=1; exit $$status

# Debian bookworm's chromium and the few libraries a bare bookworm lacks, pinned .debs
# checked by SHA-256 and unpacked (dpkg-deb -x) into .cache/chromium: no root, no apt.
CHROMIUM_CACHE ?= .cache/chromium
browser: $(STAMP) ## fetch and unpack headless Chromium for the console's browser tests
	@JOBLINE_CHROMIUM_CACHE=$(CHROMIUM_CACHE) $(PY) scripts/chromium.py $(CHROMIUM_CACHE) >/dev/null

test-browser: $(STAMP) browser ## the web console in headless Chromium (screenshots to docs/console/)
	@JOBLINE_CHROMIUM_CACHE=$(CHROMIUM_CACHE) $(PY) -m pytest tests/browser $(PYTEST_ARGS)

vendor-assets: ## re-fetch the console's htmx and uPlot (npm pack, pinned, checked) into the gateway
	@python3 scripts/vendor_assets.py

bench-console: $(STAMP) ## the console's jobs page over 1,000,000 jobs: server time and queries per page
	@$(PY) -m bench.console_pages $(ARGS)

test-unit: $(STAMP) ## run the pure unit tests only (seconds, no servers)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## run the tests against real PostgreSQL and the broker
	@$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP) ## run the services as processes
	@$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-faults: $(STAMP) ## kill, restart, duplicate, poison
	@$(PY) -m pytest tests/faults $(PYTEST_ARGS)

# No servers and no conftest: the deployment checks must report even when the services'
# code does not import (one of them checks exactly that).
deploy-check: $(STAMP) promtool ## validate docker-compose.yml, the Helm chart (Kubernetes and CRD schemas) and the alert rules (promtool unit tests)
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	@PROMTOOL="$(PROMTOOL)" $(PY) -m pytest tests/deploy --noconftest $(PYTEST_ARGS)

# The alert rules' unit tests (tests/deploy/test_alert_rules.py) need promtool. Debian's and
# Ubuntu's prometheus package brings it: installed as root (CI), with sudo, or not at all
# (the target says what to do, and the tests fail rather than skip). PROMTOOL=/path overrides.
# The package's postinst may try to start a prometheus daemon; policy-rc.d says no.
PROMTOOL ?= $(shell command -v promtool 2>/dev/null)
promtool: ## install promtool for the alert-rule tests (apt-get install prometheus; root or sudo)
	@if [ -n "$(PROMTOOL)" ] && [ -x "$(PROMTOOL)" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "promtool is missing and there is no apt-get: install Prometheus 2.x (it brings" \
		     "promtool) and put promtool on PATH, or run make with PROMTOOL=/path/to/promtool" >&2; \
		exit 1; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
		echo "promtool is missing: run 'apt-get install -y --no-install-recommends prometheus'" \
		     "as root, or set PROMTOOL=/path/to/promtool" >&2; \
		exit 1; \
	fi; \
	echo "installing promtool (apt-get install prometheus) ..."; \
	policy=/usr/sbin/policy-rc.d; added=; \
	if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' | $$SUDO tee $$policy >/dev/null \
		&& $$SUDO chmod +x $$policy && added=1; fi; \
	status=0; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends prometheus >/dev/null || status=$$?; \
	if [ -n "$$added" ]; then $$SUDO rm -f $$policy; fi; \
	if [ $$status -ne 0 ] || ! command -v promtool >/dev/null 2>&1; then \
		echo "apt-get could not install promtool (exit $$status): install Prometheus 2.x or set" \
		     "PROMTOOL=/path/to/promtool" >&2; \
		exit 1; \
	fi; \
	promtool --version 2>&1 | head -1

COMPOSE_SECRETS := deploy/compose/secrets
env-file: ## write random secrets for docker-compose.yml into deploy/compose/secrets/ (FORCE=1 overwrites)
	@python3 deploy/compose/envfile.py $(COMPOSE_SECRETS) $(if $(FORCE),--force)

HELM_VALUES ?= deploy/helm/jobline/ci/keda-values.yaml
helm-template: $(STAMP) ## print the chart's manifests for HELM_VALUES (Helm's engine, no cluster)
	@$(PY) -m tests.deploy.manifests $(HELM_VALUES)

SCALE_JOBS ?= 50000
test-scale: $(STAMP) ## 2 gateways, 3 relays, 4 workers, 50,000 jobs: each once, shares, order, rate
	@JOBLINE_SCALE_JOBS=$(SCALE_JOBS) $(PY) -m pytest tests/e2e/test_multi_replica.py -s $(PYTEST_ARGS)

test-upgrade: $(STAMP) ## the previous migration's worker against a new gateway on the new schema
	@$(PY) -m pytest tests/e2e/test_upgrade.py -s $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and mypy (strict for libs/common)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/lint-imports --no-cache
	@$(VENV)/bin/mypy libs/common/src services/gateway/src services/outbox-relay/src services/worker/src services/ai-analyzer/src tests bench

bench: $(STAMP) ## print benchmark figures as JSON
	@$(PY) -m bench

bench-flow: $(STAMP) ## flow control: priority behind a 50,000-job backlog, limits, tenant fairness
	@$(PY) -m bench --only p,f

bench-workflows: $(STAMP) ## a workflow's overhead per node over plain jobs, and a chain's step latency
	@$(PY) -m bench.workflows $(ARGS)

bench-retention: $(STAMP) ## table sizes over 5 min of finished jobs purged by the relay (ARGS="--no-purge" for comparison)
	@$(PY) -m bench.retention $(ARGS)

eval-analyzer: $(STAMP) ## score the detectors on the labelled corpus (tuning + held-out): precision, recall, delay per kind
	@$(PY) -m jobline_analyzer.evaluation

clean: ## remove the virtual environment, caches and local dev data
	rm -rf $(VENV) .jobline .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
