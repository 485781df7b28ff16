# The two commands of the README: `make up` (the stack, up and shown working) and `make test`.
# Both install what they need: Debian packages (ops/system-packages.sh) and the virtualenv.
SHELL := /bin/bash
VENV ?= .venv
# Debian's python: its files are readable by the service user the stack drops to as root.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
BIN := $(VENV)/bin
STACK ?= local

.PHONY: help deps venv up demo status down test bench lint load load-full
help:
	@echo "make up      install everything, start the local stack, show it working"
	@echo "make test    install everything, start the local stack and a Docker engine, run all tests"
	@echo "make bench   run every benchmark in benchmarks/ (prints figures beside targets)"
	@echo "make status  fab status;  make down  stop the stack (data kept)"
	@echo "make load    the specification's load profile scaled to 60 s against the running stack (exit 1 if an ensure is missed)"
	@echo "make load-full  the same profile at the specification's 660 s"
	@echo "make lint    ruff, mypy and the workflow checks (the pipeline's quality job)"

deps:
	@sh ops/system-packages.sh

# requirements.lock (pip-compile --generate-hashes, see docs/images.md) is the one source of
# versions: this virtualenv, the app image and CI all install exactly it.
$(BIN)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	@$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

# checkov pins versions that clash with the project's; it lives in a venv of its own.
$(VENV)/checkov/bin/checkov:
	@$(PYTHON) -m venv $(VENV)/checkov
	@$(VENV)/checkov/bin/python -m pip install -q --upgrade pip
	@$(VENV)/checkov/bin/python -m pip install -q checkov

venv: $(BIN)/.installed $(VENV)/checkov/bin/checkov

up: deps venv
	$(BIN)/fab up --stack $(STACK)
	$(BIN)/fab status --stack $(STACK)
	$(BIN)/fab demo --stack $(STACK)
	$(BIN)/fab token.first-admin --stack $(STACK)

demo: venv
	$(BIN)/fab demo --stack $(STACK)

status: venv
	$(BIN)/fab status --stack $(STACK)

down: venv
	$(BIN)/fab down --stack $(STACK)

test: deps venv
	@sh ops/docker-engine.sh || echo "docker engine: none here; tests marked docker fail when CI=true (they skip otherwise)"
	$(BIN)/fab up --stack $(STACK)
	$(BIN)/python -m pytest

bench: deps venv
	@failed=""; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	  if [ -n "$$failed" ]; then echo "missed a target or failed:$$failed"; exit 1; fi

# the pipeline's quality job (.github/workflows/ci.yml), runnable here
lint: venv
	$(BIN)/ruff check --config .github/linters/ruff.toml app infra ops testing tests benchmarks load
	$(BIN)/mypy --config-file .github/linters/mypy.ini
	$(BIN)/python -m pytest tests/unit/test_workflows.py -q -p no:cacheprovider

# the specification's load profile (docs/load.md); the stack must be up
load: venv
	$(BIN)/python load/run.py --stack $(STACK)

load-full: venv
	$(BIN)/python load/run.py --scale 1 --stack $(STACK)
