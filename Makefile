# leadflow — two commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
N8N_CACHE ?= $(HOME)/.cache/leadflow/n8n

.PHONY: install run test ui lint format bench bench-s clean n8n test-n8n

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/leadflow run

test: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider -n auto --dist loadfile --durations=25 tests

ui: $(STAMP)
	$(BIN)/leadflow ui

n8n:
	LEADFLOW_N8N_HOME=$(N8N_CACHE) bash n8n/install.sh

test-n8n: $(STAMP) n8n
	$(BIN)/pytest -p no:cacheprovider tests/e2e/test_n8n_delivery.py

# benchmarks (bench/README.md): M carries the issue's targets and must finish within 30 minutes on 2 cores;
# S is the small full run (the suite's smoke run is XS: tests/bench/test_bench_smoke.py). Results: bench/results/<size>.md and .json. L: `$(BIN)/python -m bench --size L`.
# the [bench] extra: drt-core, the peer reverse-ETL tool the activation benchmark compares against
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) n8n
	$(BIN)/python -m bench --size M

bench-s: $(BENCH_STAMP) n8n
	$(BIN)/python -m bench --size S

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_project

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf .leadflow dbt_project/target dbt_project/logs
