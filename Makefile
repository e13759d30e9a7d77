# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Everything installs into the repo: node_modules/ (Foundry, solcjs, Uniswap artifacts) and .venv/.

SHELL := /bin/bash
# The interpreter .venv is made from: the distribution's python3 when it is 3.11 or later and
# can make a venv (Debian's is an optimised, statically linked build; the pyenv 3.11 on PATH
# here, a plain shared-library build, ran bench/bench_backtest.py 13-15% slower on the same
# machine), else the first python3 on PATH.
# `make PYTHON=...` chooses another; an existing .venv is kept (delete it to remake it).
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo /usr/bin/python3 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
NODE_STAMP := node_modules/.keeper-installed
VENV_STAMP := $(VENV)/.keeper-installed
FORGE = $(firstword $(wildcard node_modules/@foundry-rs/forge-*/bin/forge))
CONTRACTS_STAMP := contracts/out/.keeper-built
CONTRACT_SOURCES := $(shell find contracts/src contracts/test -name '*.sol' 2>/dev/null) contracts/foundry.toml

.PHONY: all install build demo test test-contracts test-python test-container lint typecheck clean ops-tools pg-tools

all: build

install: $(NODE_STAMP) $(VENV_STAMP)

# Installs the versions package-lock.json pins; the Foundry binaries come inside the
# platform packages, so no install script downloads anything. Not `npm ci`: the registry
# here serves only this platform's Foundry package, so the lock cannot list the others
# and `npm ci` refuses it as out of sync.
$(NODE_STAMP): package.json package-lock.json
	npm install --no-audit --no-fund --no-save --loglevel=error
	@test -n "$$(ls node_modules/@foundry-rs/forge-*/bin/forge 2>/dev/null)" || { echo "forge binary missing from node_modules"; exit 1; }
	touch $@

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

build: $(CONTRACTS_STAMP)

$(CONTRACTS_STAMP): $(NODE_STAMP) $(CONTRACT_SOURCES)
	cd contracts && ../$(FORGE) build --quiet
	touch $@

demo: install build
	$(PY) -m deploy.demo

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check keeper deploy tests bench
	$(VENV)/bin/ruff format --check keeper deploy tests bench

typecheck: $(VENV_STAMP)
	$(VENV)/bin/mypy

test-contracts: build
	cd contracts && ../$(FORGE) test

# tests/ops run `promtool check/test rules` and a real Prometheus server: Debian's `prometheus`
# package brings both (the only thing installed outside the repo; apt, as root or with sudo).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

ops-tools:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  echo "installing Debian's prometheus package (server and promtool) for tests/ops"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	fi

# tests/stores and the PostgreSQL runs of tests/faults start their own throwaway cluster
# (tests/pg_cluster.py) from Debian's `postgresql` server binaries (apt, as root or with sudo;
# the package's own service is not used).
pg-tools:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  echo "installing Debian's postgresql package (initdb, pg_ctl) for tests/stores and tests/faults"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	fi

# Includes the `fork` marker: the trading tests on the second chain (keeper vault deploy).
# The fault suite runs twice: on the SQLite journal (in the first run) and on PostgreSQL.
test-python: install build ops-tools pg-tools
	$(PY) -m pytest -m "not container"
	KEEPER_TEST_JOURNAL=postgresql $(PY) -m pytest tests/faults -m "not container"

# tests/container build the images from the Dockerfile and run them and the compose stack with
# podman: setup-host.sh installs Debian's podman, runc and mmdebstrap (apt, as root or with sudo)
# and writes the podman settings this machine needs. Base images are made from Debian packages
# once and cached in /var/cache/keeper-images (KEEPER_IMAGE_CACHE). Here they must run, not skip.
test-container: install build
	bash tests/container/setup-host.sh
	KEEPER_CONTAINER_TESTS=required $(PY) -m pytest tests/container -m container

test: lint typecheck test-contracts test-python test-container

clean:
	rm -rf contracts/out contracts/cache .pytest_cache .mypy_cache .ruff_cache
