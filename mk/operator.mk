# The trainpipe operator on the local cluster (mk/cluster.mk): run it as a local process with its
# ServiceAccount's RBAC (operator-up), or the whole demo with the operator installed by the Helm chart
# (example data on a claim, a TrainingPipeline, the report).
# State, logs and pids live next to the cluster's in $(CLUSTER_DIR).

OPERATOR_ARGS ?=
DEMO_TIMEOUT ?= 1800

.PHONY: operator-up operator-down demo-cluster bench-operator bench-scale bench-demo

operator-up: install cluster-up ## Install the CRD + RBAC and run the operator locally as its ServiceAccount (reused when up)
	@$(CLUSTER_ENV) hack/operator-up.sh $(OPERATOR_ARGS)

operator-down: ## Stop the operator started by operator-up (the CRD and pipelines stay)
	@$(CLUSTER_ENV) hack/operator-down.sh

# The script starts the cluster (reused when up) and installs the operator with the Helm chart
# (`helm upgrade --install`, values-dev.yaml), so it also runs alone. DEMO_HELM_ARGS: more helm arguments.
DEMO_HELM_ARGS ?=
demo-cluster: install cluster-build ## The demo on Kubernetes: cluster, operator via `helm install` (chart helm/trainpipe), example data, TrainingPipeline `demo`, report path
	@$(CLUSTER_ENV) DEMO_TIMEOUT=$(DEMO_TIMEOUT) DEMO_HELM_ARGS="$(DEMO_HELM_ARGS)" hack/demo-cluster.sh

bench-operator: install cluster-up ## Operator hand-off latency on the local cluster (skipped pods) into BENCHMARKS.md
	$(CLUSTER_ENV) $(VENV)/bin/python hack/operator-bench.py --pipelines 20

# Full run: 50 then 200 pipelines (37 + 1 report pods each), three operator/ideal pairs each (the
# median ratio is reported: one pair's ratio moved by ±0.15 between runs of the same code); about
# 35 minutes on 2 cores, and it prints how long each N took. Each phase runs on a control plane of
# its own in $(SCALE_CLUSTER_DIR), started for it and deleted after (the cluster of `make
# cluster-up`, if up, is left alone, but its idle load is noise: take it down first). SCALE_ARGS
# narrows it for development, e.g. SCALE_ARGS="--pipelines 5 --no-write".
SCALE_ARGS ?= --pipelines 50 200 --repeat 3 --profile docs
SCALE_CLUSTER_DIR ?= $(CURDIR)/.cache/scale-cluster
bench-scale: install cluster-build ## N pipelines at once: operator vs an ideal script, API writes, RSS, hand-offs, object size into BENCHMARKS.md + docs/bench-scale.png
	$(CLUSTER_ENV) $(VENV)/bin/python hack/scale-bench.py --fresh-cluster $(SCALE_CLUSTER_DIR) $(SCALE_ARGS)

bench-demo: install cluster-build ## The demo pipeline on the real node beside the simulated nodes (fresh cluster each) into BENCHMARKS.md
	$(CLUSTER_ENV) $(VENV)/bin/python hack/demo-bench.py
