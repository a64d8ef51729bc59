# Local Kubernetes control plane for the cluster test tier (issue #3): build, start, stop, test.
# Binaries are built from Go modules by hack/build-tools.sh into $(TRAINPIPE_TOOLS) (outside the
# clone, keyed by version); runtime state lives in $(CLUSTER_DIR) (git-ignored).

VENV ?= .venv
TRAINPIPE_TOOLS ?= $(HOME)/.cache/trainpipe/tools
CLUSTER_DIR ?= $(CURDIR)/.cache/cluster
CLUSTER_ENV = VENV=$(VENV) TRAINPIPE_TOOLS=$(TRAINPIPE_TOOLS) TRAINPIPE_CLUSTER_DIR=$(CLUSTER_DIR)

.PHONY: cluster-build cluster-up cluster-down cluster-leftovers test-cluster test-gpu-image

cluster-build: ## Build kube-apiserver/-controller-manager/-scheduler, kubectl, kubelet, etcd, kwok, helm, registry, pause (cached by version)
	@$(CLUSTER_ENV) hack/build-tools.sh

cluster-up: cluster-build ## Start the control plane, 4 simulated nodes, the registry, the real node (TRAINPIPE_REAL_NODE=auto|require|off) and the pod executor (reused when up)
	@$(CLUSTER_ENV) localcluster/up.sh >/dev/null

cluster-down: ## Stop the local cluster and delete its state (binaries stay cached)
	@$(CLUSTER_ENV) localcluster/down.sh

cluster-leftovers: ## After cluster-down: list any process, mount, interface, firewall chain or cgroup the cluster left (fails if any)
	@$(CLUSTER_ENV) localcluster/node/leftovers.sh

# The images the tier's real node runs (built here, cached; the tests push them to the cluster's
# registry). The GPU image holds two CUDA stacks (BENCHMARKS.md, "Images"): its smoke test has a target
# of its own, outside `make test`.
TEST_IMAGES ?= operator jobs-cpu

test-cluster: cluster-build ## Build the operator and jobs-cpu images, then run the cluster tier (tests/cluster) against the local cluster, starting it if needed
	$(MAKE) --no-print-directory images IMAGES="$(TEST_IMAGES)"
	$(CLUSTER_ENV) $(VENV)/bin/python -m pytest tests/cluster -m "cluster and not gpu_image" --durations=15

test-gpu-image: cluster-build ## Build jobs-gpu and run a tiny MLP and LSTM in it on the real node (not part of make test: several GB)
	$(MAKE) --no-print-directory images IMAGES=jobs-gpu
	$(CLUSTER_ENV) $(VENV)/bin/python -m pytest tests/cluster -m gpu_image
