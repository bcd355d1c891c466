# One command each: `make serve` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Serving needs the service and its stores, not the test and lint toolchain.
SERVE_STAMP := $(VENV)/.installed-serve

# The service's own variables are honoured; HOST=… / PORT=… on the command line win.
HOST ?= $(or $(RATEKEEPER_HOST),127.0.0.1)
PORT ?= $(or $(RATEKEEPER_PORT),8000)

.PHONY: test lint typecheck pytest serve bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SERVE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[server,chatkit,redis]'
	touch $(SERVE_STAMP)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check ratekeeper tests benchmarks
	$(BIN)/ruff format --check ratekeeper tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers, one test file each at a time: the suite mostly waits on services starting.
pytest: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile

serve: $(SERVE_STAMP)
	$(BIN)/ratekeeper serve --host $(HOST) --port $(PORT)

bench: $(STAMP)
	$(BIN)/pytest benchmarks -q --benchmark-only
	$(BIN)/python benchmarks/compare_peers.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .benchmarks
