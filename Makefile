# lungseg: every entry point a developer or CI needs. Run from the repository root.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
MODELS ?= models
export LUNGSEG_HOST ?= 127.0.0.1
export LUNGSEG_PORT ?= 8000

.PHONY: help install install-dev serve test test-fast lint format bench train export openapi report clean

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

test: install-dev  ## run the whole test suite
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

export: install-dev  ## export the checkpoints of runs/small to ONNX + model cards in build/models
	$(BIN)/python -m export --runs runs/small --data $(DATA) --out build/models

openapi: install-dev  ## regenerate openapi/openapi.json from the app
	$(BIN)/python -m service.api.openapi_dump openapi/openapi.json

clean:  ## remove caches and build outputs (keeps the venv)
	rm -rf build runs .pytest_cache .mypy_cache .ruff_cache
