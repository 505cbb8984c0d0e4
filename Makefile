# Ly: two commands for a fresh Debian/Ubuntu machine.
#   make run   set up, migrate, load municipalities and demo data, serve http://localhost:8000
#   make test  set up, run the whole test suite
# DATABASE_URL, when set, points Ly at an existing PostgreSQL+PostGIS server instead of the
# local one that scripts/provision-db.sh sets up.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCAL_DB_URL := postgresql://ly:ly@127.0.0.1:5432/ly
# The tests: on a server named by DATABASE_URL, in its database ly_test (LY_TEST_DATABASE_URL
# overrides); without one, on a throw-away cluster the suite starts itself (tests/pgcluster.py).
ifeq ($(origin DATABASE_URL),undefined)
  export DATABASE_URL := $(LOCAL_DB_URL)
  PROVISION := env -u DATABASE_URL bash scripts/provision-db.sh
else
  PROVISION := bash scripts/provision-db.sh
  export LY_TEST_DATABASE_URL ?= $(patsubst %/ly,%/ly_test,$(DATABASE_URL))
endif
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: setup venv db system-deps run serve migrate demo test bench bench-quick bench-before-after clean

setup: venv db

# Python interpreter with venv and headers; Chromium for the browser tests (root only).
system-deps:
	@bash scripts/system-deps.sh

$(BIN)/.installed: pyproject.toml | system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/.installed

db:
	@$(PROVISION)

migrate: setup
	$(BIN)/ly migrate

demo: migrate
	$(BIN)/ly load-municipalities
	$(BIN)/ly load-demo

# Local sign-in without an identity provider: a development key signs tokens from
# `ly dev-token` (see README). LY_ENVIRONMENT=production refuses such keys.
DEV_KEY := .ly/dev-key.pem

run: demo
	@$(BIN)/ly dev-key --key-file $(DEV_KEY) >/dev/null
	@echo "Sign in for writing: TOKEN=\$$($(BIN)/ly dev-token --role municipal_editor --kommune 101)"
	LY_DEV_KEY_FILE=$(DEV_KEY) $(BIN)/ly serve --host $(HOST) --port $(PORT)

serve: venv
	@$(BIN)/ly dev-key --key-file $(DEV_KEY) >/dev/null
	LY_DEV_KEY_FILE=$(DEV_KEY) $(BIN)/ly serve --host $(HOST) --port $(PORT)

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Benchmarks against tipg and pygeoapi (bench/README.md): builds a data set of 1,000,000
# shelters and 100,000 event areas in database ly_bench, installs wrk/pgbench/ogr2ogr and the
# peers' venvs when missing.
bench: setup
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: setup
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

# Ly ÷ tipg for items by bbox and tiles on BEFORE (a git worktree, its own database
# ly_bench_before) and on this checkout, RUNS times each, alternating; medians compared.
BEFORE ?= ccb35fd
RUNS ?= 3
bench-before-after: setup
	BENCH_ARGS='$(BENCH_ARGS)' sh bench/before_after.sh $(BEFORE) $(RUNS)

clean:
	rm -rf $(VENV) *.egg-info test-output
