"""docs/reference.md is exactly what the models generate, and it documents every field the CRD accepts."""

from __future__ import annotations

from pathlib import Path

from trainpipe.contract.crd import spec_schema
from trainpipe.contract.reference import REFERENCE_PATH, render, rows

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_reference_matches_the_models():
    assert (ROOT / REFERENCE_PATH).read_text() == render(), "docs/reference.md drifted from the models: run `make manifests` and commit it"


def test_every_spec_field_a_user_can_set_is_listed_with_its_default():
    documented = {path: extra for path, _, extra, _ in rows(spec_schema(), "spec")}
    for field in ("spec.schedule.cron", "spec.keepRuns", "spec.stages.gpu.gpusPerPod", "spec.artifacts.retainPolicy", "spec.data.volume.claimName"):
        assert field in documented
    assert "default `1`" in documented["spec.stages.gpu.gpusPerPod"] and "default `10`" in documented["spec.keepRuns"]
