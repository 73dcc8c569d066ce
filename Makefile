# lungseg: every entry point a developer or CI needs. Run from the repository root.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
MODELS ?= models
export LUNGSEG_HOST ?= 127.0.0.1
export LUNGSEG_PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium
RUN ?= latest
REPORT_SET ?= $(DATA)/cxr-covid19-gb
REPORT_OUT ?= build/report

.PHONY: help install install-dev browser-deps serve test test-fast lint format bench train export openapi report clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-service: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train,report]'
	touch $@ $(VENV)/.installed-service

install: $(VENV)/.installed-service  ## set up the service (ONNX Runtime, no torch)

install-dev: $(VENV)/.installed-dev  ## set up everything: service, training, tests, lint

serve: install  ## run the service with the bundled models on $LUNGSEG_HOST:$LUNGSEG_PORT
	$(BIN)/python -m service.api

browser-deps:  ## Debian's chromium for the browser tests (apt-get when missing and root)
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "no $(CHROMIUM) and not root: the browser tests will be skipped"; \
	fi

test: install-dev browser-deps  ## run the whole test suite (browser tests in headless chromium)
	$(BIN)/python -m pytest

lint: install-dev  ## ruff + mypy
	$(BIN)/ruff check service training export tests
	$(BIN)/ruff format --check service training export tests
	$(BIN)/mypy

format: install-dev  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix service training export tests
	$(BIN)/ruff format service training export tests

bench: install-dev  ## performance benchmark: prints a table, appends bench-results/history.jsonl
	$(BIN)/python -m service.perf --models $(MODELS) $(BENCH_ARGS)

train: install-dev  ## small CPU training run of every network (minutes), checkpoints in runs/
	$(BIN)/python -m training --preset small --data $(DATA) --out runs/small

export: install-dev  ## export runs/small to ONNX + model cards in build/models, with int8/fp16 variants
	$(BIN)/python -m export --runs runs/small --data $(DATA) --out build/models
	$(BIN)/python -m export.quantize --models build/models --data $(DATA)

report: install-dev  ## HTML report of a benchmark run: RUN=<id|run.json|latest> REPORT_SET=<set dir>
	$(BIN)/python -m service.report --run $(RUN) --set $(REPORT_SET) --out $(REPORT_OUT)

openapi: install-dev  ## regenerate openapi/openapi.json from the app
	$(BIN)/python -m service.api.openapi_dump openapi/openapi.json

clean:  ## remove caches and build outputs (keeps the venv)
	rm -rf build runs .pytest_cache .mypy_cache .ruff_cache
