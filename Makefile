# sitenet: `make run` starts the whole system, `make test` runs every check.
# Both install what they need into .venv (and node_modules for buf) first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
BUF := node_modules/.bin/buf

.PHONY: run test install lint proto catalog manifests clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(RUN_STAMP)

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

install: $(DEV_STAMP) $(BUF)

## Start the broker and the three services on the embedded defaults (Ctrl-C stops all).
run: $(RUN_STAMP)
	$(BIN)/sitenet run

## Every check: lint, types, architecture, proto lint, then the whole test suite.
test: $(DEV_STAMP) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/mypy services
	$(BIN)/lint-imports
	$(BUF) lint
	$(BIN)/pytest -q

lint: $(DEV_STAMP) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/mypy services
	$(BIN)/lint-imports
	$(BUF) lint
	$(BIN)/hadolint Dockerfile

## Regenerate services/common/generated from proto/ (a test fails when it is stale).
proto: $(DEV_STAMP)
	$(BIN)/python scripts/generate_protos.py

## Print the event catalog table that the README carries.
catalog: $(RUN_STAMP)
	$(BIN)/sitenet catalog

## Render and validate deploy/k8s offline (kustomize, Kubernetes and CRD schemas, topics).
## `make test` runs these too (tests/deploy).
manifests: $(DEV_STAMP)
	$(BIN)/pytest -q tests/deploy/test_manifests.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache data
