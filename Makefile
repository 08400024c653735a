# Churn platform. `make help` lists the targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV := $(BIN)/uv

.DEFAULT_GOAL := help
.PHONY: help install lock run test test-fast test-cluster test-gpu lint layers typecheck format bench compile clean \
	kind-up kind-load kind-deploy kind-e2e kind-down

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Runtime set first, then the dev tools on top, every file checked against the locks' SHA-256
# (--require-hashes). requirements.lock pins torch's CPU build (torch==X+cpu, see `lock` below):
# here pip finds it in the machine's local wheel folder; elsewhere add the PyTorch CPU index,
# e.g. `PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make install`.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP) ## Create and fill .venv from the pinned set when missing or stale

# --- Locks ------------------------------------------------------------------------------------
# `make lock` resolves pyproject.toml against PyPI alone (uv with --no-config and its default
# index, not the local file indexes pip is configured with here), for CPython 3.11 on x86_64
# Linux, the Python of .venv and of the images. It keeps every version the existing locks pin
# unless LOCK_ARGS says otherwise (LOCK_ARGS=--upgrade, or --upgrade-package NAME).
# requirements-dev.lock holds only what the `dev` extra adds, resolved together with the runtime
# set and constrained to requirements.lock (its first line), so shared packages always agree.
#
# torch is the exception, set here by hand. PyPI's Linux torch wheel depends on the CUDA libraries
# and triton (several GB; TORCH_GPU_ONLY lists torch's direct ones, their dependencies go with
# them); the CPU build does not. So the locks leave those out, and requirements.lock pins the CPU
# build, torch==TORCH_VERSION+cpu, with the SHA-256 of its wheel as the PyTorch CPU index serves
# it (https://download.pytorch.org/whl/cpu; this machine's local wheel folder holds the same
# file). PyPI's hashes would not do: PyPI has no +cpu build, and given `torch==X` with hashes, pip
# prefers a file whose index lists a matching hash, i.e. PyPI's CUDA build over the local CPU
# wheel. TORCH_CPU_SHA256 may list several wheels (other Pythons or architectures).
# docker/Dockerfile.gpu installs the CUDA build of the same version and the rest without torch.
TORCH_VERSION := 2.13.0
TORCH_CPU_SHA256 := 6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b
TORCH_GPU_ONLY := cuda-bindings cuda-toolkit nvidia-cudnn-cu13 nvidia-cusparselt-cu13 \
	nvidia-nccl-cu13 nvidia-nvshmem-cu13 triton
UV_COMPILE = $(UV) pip compile --quiet --no-config --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --generate-hashes --excludes $(VENV)/lock-excludes.txt \
	--custom-compile-command "make lock" $(LOCK_ARGS)

lock: $(UV) ## Regenerate both lock files, with hashes, from pyproject.toml
	printf '%s\n' $(TORCH_GPU_ONLY) > $(VENV)/lock-excludes.txt
	echo 'torch==$(TORCH_VERSION)' > $(VENV)/lock-torch.txt
	$(UV_COMPILE) -c $(VENV)/lock-torch.txt -o requirements.lock pyproject.toml
	$(UV_COMPILE) -c requirements.lock -o requirements-dev.lock pyproject.toml --extra dev \
	  $$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' requirements.lock)
	awk 'NR == 3 { print "-c requirements.lock" } { print }' requirements-dev.lock > $(VENV)/lock.tmp \
	  && mv $(VENV)/lock.tmp requirements-dev.lock
	awk -v v=$(TORCH_VERSION) -v hashes="$(TORCH_CPU_SHA256)" ' \
	  NR == 3 { print "# torch: its CPU build, without the CUDA libraries (Makefile, lock)" } \
	  /^torch==/ { \
	    n = split(hashes, h, " "); print "torch==" v "+cpu \\"; \
	    for (i = 1; i <= n; i++) print "    --hash=sha256:" h[i] (i < n ? " \\" : ""); \
	    skip = 1; next } \
	  skip && /^    --hash=/ { next } \
	  /^    #   -c / { next } \
	  { skip = 0; print }' requirements.lock > $(VENV)/lock.tmp \
	  && mv $(VENV)/lock.tmp requirements.lock

# uv alone, at the dev lock's version, so that `make lock` works even while pyproject.toml names a
# dependency the locks do not hold yet (the full install's `pip check` would refuse).
$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	awk '/^uv==/ { f = 1 } f && /^[^ ]/ && !/^uv==/ { f = 0 } f && !/^ *#/' requirements-dev.lock \
	  > $(VENV)/uv-requirement.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r $(VENV)/uv-requirement.txt

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

# --- kind: a local cluster (manifests/kind/kind.sh checks docker, kind, kubectl and helm) -------
KIND_SH := manifests/kind/kind.sh

kind-up: ## kind cluster + cert-manager v1.17.0, KServe v0.20.0 (Standard), KFP 2.17.0, Trainer v2.3.0
	$(KIND_SH) up

kind-load: ## Build both images from docker/ and load them into the kind cluster
	$(KIND_SH) load

kind-deploy: ## The local overlay, Redis, the churn bucket and Secrets from the environment
	$(KIND_SH) deploy

kind-e2e: $(STAMP) ## Submit the pipeline, call the transformer, run the monitor (tests/e2e)
	PYTHON=$(abspath $(BIN)/python) $(KIND_SH) e2e

kind-down: ## Delete the kind cluster
	$(KIND_SH) down
