# What a user installs without a checkout (docs/install.md): the Python wheel and sdist, and the operator's
# chart as an OCI artifact beside the images. Both land in $(DIST); tests/e2e/test_wheel.py and
# tests/e2e/test_chart_oci.py build, install and check them.

DIST ?= dist
# The version the wheel gets (setuptools reads the same line): the files `make dist` checks.
PACKAGE_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' jobs/trainpipe/__init__.py)

.PHONY: dist chart-package chart-push

# --no-isolation: the build backend is the one `make install` put in the virtualenv from the locks
# (pyproject's [build-system] requires are locked too), so building needs no index.
dist: install ## Build the wheel and sdist into $(DIST) (the wheel from the sdist, as an index's users get it); twine checks their metadata
	$(PY) -m build --quiet --no-isolation --outdir $(DIST) .
	$(VENV)/bin/twine check --strict $(DIST)/trainpipe-$(PACKAGE_VERSION)-py3-none-any.whl $(DIST)/trainpipe-$(PACKAGE_VERSION).tar.gz

chart-package: ## helm package the chart into $(DIST)/trainpipe-<chart version>.tgz
	@test -x $(HELM) || TRAINPIPE_TOOLS=$(TOOLS_DIR) hack/build-tools.sh helm
	@HELM=$(HELM) DIST=$(DIST) hack/chart.sh package

chart-push: ## Package the chart and push it to oci://REGISTRY/charts (REGISTRY=host[:port]/prefix; default: the local cluster's)
	@test -x $(HELM) || TRAINPIPE_TOOLS=$(TOOLS_DIR) hack/build-tools.sh helm
	@HELM=$(HELM) DIST=$(DIST) REGISTRY="$(REGISTRY)" TRAINPIPE_CLUSTER_DIR=$(or $(CLUSTER_DIR),$(CURDIR)/.cache/cluster) hack/chart.sh push
