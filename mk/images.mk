# Container images: images/*/Dockerfile built with Docker Engine from Debian's packages (hack/engine.sh
# installs it when missing, starts it when none answers and stops what it started), on the Dockerfile's
# public base or, where that cannot be pulled, a Debian bookworm base (hack/base-image.sh), with the
# locked dependencies from the project's wheelhouse (hack/wheels.sh). docs/images.md explains it.

IMAGES ?= operator jobs-cpu jobs-gpu
# host[:port]/prefix for images-push; empty: the local cluster's registry (its address in
# $(CLUSTER_DIR)/registry, written when the cluster starts) with the prefix trainpipe.
REGISTRY ?=
IMAGES_ENV = IMAGES="$(IMAGES)" VENV=$(VENV) TRAINPIPE_CLUSTER_DIR=$(or $(CLUSTER_DIR),$(CURDIR)/.cache/cluster)

.PHONY: images images-push lock bench-images

images: install ## Build the images as trainpipe/<name>:<chart appVersion> (IMAGES="operator jobs-cpu" narrows)
	@$(IMAGES_ENV) hack/images.sh build

images-push: install ## Build, then push to REGISTRY=host[:port]/prefix (default: the local cluster's); digests in .cache/images/digests.env
	@$(IMAGES_ENV) REGISTRY="$(REGISTRY)" hack/images.sh push

lock: install ## Recompile locks/*.txt after a change to pyproject.toml (pins kept; UPGRADE=1 re-resolves everything)
	VENV=$(VENV) hack/lock.sh

bench-images: install ## Image sizes, cold and warm build times and what the GPU image holds, into BENCHMARKS.md
	$(IMAGES_ENV) $(PY) hack/images-bench.py
