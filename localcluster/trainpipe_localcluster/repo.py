"""Where the repository's files the local cluster installs live (the package is used from a checkout)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCALCLUSTER = REPO / "localcluster"
HACK = REPO / "hack"
CRD_FILE = REPO / "crds" / "trainpipe.io_trainingpipelines.yaml"
RBAC_FILE = REPO / "operator" / "deploy" / "rbac.yaml"
EXAMPLE_DATA_FILE = REPO / "examples" / "cluster-example-data.yaml"
