# Front door: `make demo` and `make test` set themselves up (.venv) and run.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ROWS ?= 100000
DEMO_DATA ?= data/demo/demo_$(DEMO_ROWS).tsv.gz
DEMO_RUN ?= runs/demo
PYTEST_ARGS ?=

.PHONY: help check-java venv demo test test-all bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

check-java:  ## fail in one line when Java 17+ is missing
	@sh scripts/check-java.sh

$(STAMP): setup.py
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'" >&2; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { echo "error: $(PYTHON) is not Python 3.11 (EMR 7 runs 3.11); run 'make PYTHON=/path/to/python3.11 ...'" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: check-java $(STAMP)  ## create .venv and install the project with dev extras

demo: check-java $(STAMP)  ## generate demo data and run the whole pipeline on local Spark
	@test -f $(DEMO_DATA) || $(BIN)/ctr-pipeline demo-data --rows $(DEMO_ROWS) --seed 7 --out $(DEMO_DATA)
	$(BIN)/ctr-pipeline run --input $(DEMO_DATA) --out $(DEMO_RUN)

test: check-java $(STAMP)  ## run the test suite (long tests excluded)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: check-java $(STAMP)  ## run the test suite including tests marked slow
	$(BIN)/python -m pytest -q -m "" $(PYTEST_ARGS)

bench: check-java $(STAMP)  ## run the benchmarks, JSON results in bench/results/
	$(BIN)/python -m bench.peer --rows 1000000
	$(BIN)/python -m bench.tree_methods
	$(BIN)/python -m bench.pipeline_throughput
	$(BIN)/python -m bench.sampling_compare
	$(BIN)/python -m bench.features_compare
	$(BIN)/python -m bench.evaluation_scale
	$(BIN)/python -m bench.training_compare --scaling 250000 1000000 4000000
	$(BIN)/python -m bench.refresh_compare --rows 1000000

clean:  ## remove the virtualenv, demo data and runs
	rm -rf $(VENV) data/demo runs
