# Churn platform. `make help` lists the targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast test-cluster test-gpu lint layers typecheck format bench compile clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP) ## Create and fill .venv from the pinned set when missing or stale

run: $(STAMP) ## Run the whole training pipeline locally with kfp.local on CDNOW
	$(BIN)/churn run

test: $(STAMP) ## Run the tests that can run on this machine (cluster and GPU tests skip)
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## Inner loop: the tests not marked slow (CI runs them all)
	$(BIN)/python -m pytest -m "not slow and not cluster and not gpu"

test-cluster: $(STAMP) ## Run the tests that need a Kubeflow + KServe cluster (see README)
	CHURN_TEST_CLUSTER=1 $(BIN)/python -m pytest -m cluster

test-gpu: $(STAMP) ## Run the tests that need a CUDA GPU
	$(BIN)/python -m pytest -m gpu

lint: $(STAMP) layers ## Lint and check formatting with ruff, and the layer contract
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

layers: $(STAMP) ## Check that imports follow the layers and stages (docs/architecture.md)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_layers.py

typecheck: $(STAMP) ## Type-check the packages with mypy (configured in pyproject.toml)
	$(BIN)/mypy

format: $(STAMP) ## Fix lint and formatting where ruff can
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Run the benchmarks (figures go in the README's performance section)
	$(BIN)/python benchmarks/dataset_build.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/quality.py

compile: $(STAMP) ## Compile the Kubeflow pipeline to churn_pipeline.yaml
	$(BIN)/churn pipeline compile --out churn_pipeline.yaml

clean: ## Remove run outputs (keeps .venv)
	rm -rf .churn churn_pipeline.yaml
