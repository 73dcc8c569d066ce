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

.PHONY: postgres-deps
postgres-deps:  ## Debian's PostgreSQL server for the job store tests (apt-get when missing and root)
	@if command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	else \
		echo "no PostgreSQL server and not root: the PostgreSQL store tests will be skipped"; \
	fi

test: install-dev browser-deps  ## run the whole test suite (browser tests in headless chromium)
	$(BIN)/python -m pytest

lint: install-dev  ## ruff + mypy + import-linter contracts (pyproject.toml)
	$(BIN)/ruff check service training export bench report tests
	$(BIN)/ruff format --check service training export bench report tests
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install-dev  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix service training export bench report tests
	$(BIN)/ruff format service training export bench report tests

bench: install-dev  ## performance benchmark: prints a table, appends bench-results/history.jsonl
	$(BIN)/python -m bench --models $(MODELS) $(BENCH_ARGS)

train: install-dev  ## small CPU training run of every network (minutes), checkpoints in runs/
	$(BIN)/python -m training --preset small --data $(DATA) --out runs/small

export: install-dev  ## export runs/small to ONNX + model cards in build/models, with int8/fp16 variants
	$(BIN)/python -m export --runs runs/small --data $(DATA) --out build/models
	$(BIN)/python -m export.quantize --models build/models --data $(DATA)

report: install-dev  ## HTML report of a benchmark run: RUN=<id|run.json|latest> REPORT_SET=<set dir>
	$(BIN)/python -m report --run $(RUN) --set $(REPORT_SET) --out $(REPORT_OUT)

openapi: install-dev  ## regenerate openapi/openapi.json from the app
	$(BIN)/python -m service.api.openapi_dump openapi/openapi.json

clean:  ## remove caches and build outputs (keeps the venv)
	rm -rf build runs .pytest_cache .mypy_cache .ruff_cache

# Deploy (README "Deploy"): the container image, built with podman without a daemon or registry.
IMAGE ?= localhost/lungseg:cpu
GPU_IMAGE ?= localhost/lungseg:gpu
CONTAINER_TOOLS := podman buildah mmdebstrap runc uidmap
.PHONY: container-deps image image-gpu image-test deploy-test

container-deps:  ## podman, buildah, mmdebstrap, runc for the images (apt-get when missing and root)
	@if command -v podman >/dev/null && command -v mmdebstrap >/dev/null && command -v runc >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(CONTAINER_TOOLS) ca-certificates; \
	else \
		echo "no podman/mmdebstrap/runc and not root: install $(CONTAINER_TOOLS)" >&2; exit 1; \
	fi

image: container-deps  ## the CPU image (IMAGE=localhost/lungseg:cpu) with podman (Debian bookworm base by mmdebstrap, cached; BASE_IMAGE=... to override)
	IMAGE=$(IMAGE) DOCKERFILE=docker/Dockerfile docker/build-image.sh

image-gpu: container-deps  ## the GPU image (GPU_IMAGE=localhost/lungseg:gpu); needs BASE_IMAGE=<an nvidia/cuda cudnn runtime image> reachable
	IMAGE=$(GPU_IMAGE) DOCKERFILE=docker/Dockerfile.gpu BASE_IMAGE=$${BASE_IMAGE:-docker.io/nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04} docker/build-image.sh

image-test: install-dev image  ## run the image read-only as a pod would, segment a real DICOM, check user and file system
	LUNGSEG_IMAGE=$(IMAGE) $(BIN)/python -m pytest -q -m container tests/deploy

deploy-test: install-dev  ## the deploy tests: image (when built), hadolint, Kubernetes manifests
	LUNGSEG_IMAGE=$(IMAGE) $(BIN)/python -m pytest -q tests/deploy

# Replicas behind a load balancer (README "Deploy"): HAProxy in front of three service processes
# sharing a PostgreSQL, one killed under a locust load (tests/topology).
.PHONY: haproxy-deps topology-test

haproxy-deps:  ## Debian's haproxy for the topology test (apt-get when missing and root)
	@if command -v haproxy >/dev/null || test -x /usr/sbin/haproxy; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy; \
	else \
		echo "no haproxy and not root: the topology test will be skipped"; \
	fi

topology-test: install-dev haproxy-deps postgres-deps  ## 3 replicas behind HAProxy + PostgreSQL, locust load, a replica killed (SIGKILL, SIGTERM) and revived; prints the figures
	$(BIN)/python -m pytest -q tests/topology
