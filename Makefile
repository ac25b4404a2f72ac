# Every target installs what it needs into .venv/ first (idempotent: re-runs only when the
# dependency files change), so a fresh clone needs nothing but python3 >= 3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# This machine sets PYTHONDONTWRITEBYTECODE; recompiling ~300 modules in every process costs seconds.
RUN := env -u PYTHONDONTWRITEBYTECODE
FUZZ_EXAMPLES ?= 1000
FUZZ_TARGET := letta_matrix_reference.bridge.target:fuzz_sync
FUZZ_RELAY := letta_matrix_reference.bridge.target:fuzz_relay
MATRIX_SPEC ?= ../shared/reference/matrix-spec
PRISM := .cache/prism/node_modules/.bin/prism
PRISM_VERSION := 5.14.2

.PHONY: install serve test lint package fuzz live live016 bench clean

# Two distributions: the toolkit (contracts, mockgen) and, in reference/, the bridge and real-server launchers
# it is proven on.
$(STAMP): pyproject.toml reference/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' -e ./reference
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/mockgen serve --seed examples/demo-seed.yaml

test: $(STAMP)
	$(RUN) $(PY) -m pytest -n 2

# package: the wheel built from the tracked files, installed into a fresh venv outside the repository and
# used from a project of its own (fixtures, mockgen serve, contracts validate/fuzz).
package: $(STAMP)
	$(RUN) $(PY) -m pytest tests_package

# The long jobs. fuzz: the reference bridge against the sweep and FUZZ_EXAMPLES random examples (gated on
# 100% contract coverage), its relay the same way (people talking, kills and restarts), then the sharded pytest fuzz suite and the long property tests under the
# Hypothesis `fuzz` profile, Schemathesis with its coverage and stateful phases (200 examples an operation, 200
# scenarios a service), the shards' coverage merged and gated too.
# The suite starts its own redis-server (Debian's package, installed here when missing) for the shards that
# share an example database.
fuzz: $(STAMP)
	@command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; } || \
		{ echo "make fuzz needs redis-server: apt-get install redis-server"; exit 1; }
	$(RUN) $(VENV)/bin/contracts fuzz --target $(FUZZ_TARGET) --examples $(FUZZ_EXAMPLES) --workers 2 --report reports/fuzz
	$(RUN) $(VENV)/bin/contracts fuzz --target $(FUZZ_RELAY) --examples $(FUZZ_EXAMPLES) --workers 2 --report reports/fuzz-relay
	rm -rf reports/fuzz-shards
	$(RUN) HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -n 2 tests_fuzz tests/test_fast_path.py tests/test_strings_property.py
	$(RUN) CONTRACTS_SCHEMATHESIS_COVERAGE=1 HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -n 2 tests/test_schemathesis_selfcheck.py
	$(VENV)/bin/contracts coverage reports/fuzz-shards --report reports/fuzz-shards

# live: a real Synapse and a real Letta (installed once into ~/.cache), the contract check, the
# mock-vs-real differential and the bridge against them; then the upstream Matrix spec diff when the
# reference data sits beside the checkout.
live: $(STAMP)
	rm -rf reports/live
	$(RUN) $(PY) -m pytest tests_live -m "not letta016"
	cat reports/live/*.txt
	@if [ -d $(MATRIX_SPEC) ]; then \
		$(VENV)/bin/contracts upstream-diff --matrix-spec $(MATRIX_SPEC); \
	else echo "upstream-diff: no $(MATRIX_SPEC) here, skipped"; fi

# live016: a real Letta 0.16.8 on its own PostgreSQL 15 + pgvector (the first run installs those from Debian's
# packages, as root, and Letta into ~/.cache: minutes; see reference/letta_matrix_reference/live/README.md).
live016: $(STAMP)
	$(RUN) $(PY) -m pytest tests_live -m letta016

# bench: wrk drives the load (from Debian's packages when missing); Prism comes from npm.
bench: $(STAMP) $(PRISM)
	@command -v wrk >/dev/null || apt-get install -y -q wrk || \
		{ echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	$(RUN) $(PY) -m bench

$(PRISM):
	mkdir -p .cache/prism
	cd .cache/prism && npm install --no-audit --no-fund --loglevel=error @stoplight/prism-cli@$(PRISM_VERSION)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .hypothesis reports
