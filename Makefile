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

.PHONY: help install run test test-unit test-integration test-e2e test-faults lint bench eval-analyzer clean

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

test: $(STAMP) ## run the whole suite (unit, integration, e2e, faults)
	@$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## run the pure unit tests only (seconds, no servers)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## run the tests against real PostgreSQL and the broker
	@$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP) ## run the services as processes
	@$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-faults: $(STAMP) ## kill, restart, duplicate, poison
	@$(PY) -m pytest tests/faults $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and mypy (strict for libs/common)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/lint-imports --no-cache
	@$(VENV)/bin/mypy libs/common/src services/gateway/src services/outbox-relay/src services/worker/src services/ai-analyzer/src tests bench

bench: $(STAMP) ## print benchmark figures as JSON
	@$(PY) -m bench

eval-analyzer: $(STAMP) ## replay a simulated day with injected incidents; print precision/recall/delay
	@$(PY) -m jobline_analyzer.evaluation

clean: ## remove the virtual environment, caches and local dev data
	rm -rf $(VENV) .jobline .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
