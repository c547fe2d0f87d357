# One entry point for people and CI: `make test` sets up what it needs (system programs
# through scripts/bootstrap.sh, the venv through pip) and runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bootstrap install test test-fast lint typecheck pytest bench run dev clean

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# redis-server, PostgreSQL and Chromium from apt: installed when missing (root or
# passwordless sudo), else it stops with the command to run. Cheap when all is there.
bootstrap:
	./scripts/bootstrap.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Coverage of the test processes (the API in-process, the worker's services called
# directly); the floor is fail_under in pyproject.toml. Four processes on two cores:
# most tests wait on servers they started, and a file's tests stay together (its
# module fixtures are built once). Every test is written to hold under that load.
PYTEST_WORKERS ?= 4
pytest: bootstrap $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --cov --cov-report=term $(PYTEST_ARGS)

test: lint typecheck pytest

# The tests that start no server or worker (tests/conftest.py marks the others
# `servers`): no bootstrap. IMAGEPIPE_TESTS_FAST=1 makes a server fixture fail the
# test that asked for it, so a test missing its mark cannot start one here.
test-fast: $(STAMP)
	IMAGEPIPE_TESTS_FAST=1 $(BIN)/pytest -n 2 -m "not servers" -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	$(BIN)/python -m bench

dev: $(STAMP)
	$(BIN)/imagepipe dev

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
