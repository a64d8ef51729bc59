# Local Kubernetes control plane for the cluster test tier (issue #3): build, start, stop, test.
# Binaries are built from Go modules by hack/build-tools.sh into $(TRAINPIPE_TOOLS) (outside the
# clone, keyed by version); runtime state lives in $(CLUSTER_DIR) (git-ignored).

VENV ?= .venv
TRAINPIPE_TOOLS ?= $(HOME)/.cache/trainpipe/tools
CLUSTER_DIR ?= $(CURDIR)/.cache/cluster
CLUSTER_ENV = VENV=$(VENV) TRAINPIPE_TOOLS=$(TRAINPIPE_TOOLS) TRAINPIPE_CLUSTER_DIR=$(CLUSTER_DIR)

.PHONY: cluster-build cluster-up cluster-down test-cluster

cluster-build: ## Build kube-apiserver/-controller-manager/-scheduler, kubectl, etcd, kwok, helm (cached by version)
	@$(CLUSTER_ENV) hack/build-tools.sh

cluster-up: cluster-build ## Start the local control plane, 4 simulated nodes and the pod executor (reused when up)
	@$(CLUSTER_ENV) localcluster/up.sh >/dev/null

cluster-down: ## Stop the local cluster and delete its state (binaries stay cached)
	@$(CLUSTER_ENV) localcluster/down.sh

test-cluster: cluster-build ## Run the cluster tier (tests/cluster) against the local cluster, starting it if needed
	$(CLUSTER_ENV) $(VENV)/bin/python -m pytest tests/cluster -m cluster
