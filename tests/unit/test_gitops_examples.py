"""examples/gitops: the kustomization lists files that exist, and every TrainingPipeline in it is a valid spec."""

from __future__ import annotations

from pathlib import Path

import yaml

from trainpipe.contract.names import KIND
from trainpipe.contract.pipeline import TrainingPipeline

GITOPS = Path(__file__).resolve().parents[2] / "examples" / "gitops"


def test_the_kustomization_names_only_files_that_exist() -> None:
    kustomization = yaml.safe_load((GITOPS / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and kustomization["namespace"] == "trainpipe-gitops"
    assert all((GITOPS / name).is_file() for name in kustomization["resources"])


def test_every_pipeline_of_the_example_is_valid_and_one_retrains_nightly() -> None:
    kustomization = yaml.safe_load((GITOPS / "kustomization.yaml").read_text())
    docs = [d for name in kustomization["resources"] for d in yaml.safe_load_all((GITOPS / name).read_text())]
    pipelines = [TrainingPipeline.model_validate(d) for d in docs if d["kind"] == KIND]
    assert len(pipelines) == 2
    scheduled = [p for p in pipelines if p.spec.schedule is not None]
    assert len(scheduled) == 1
    assert (scheduled[0].spec.schedule.cron, scheduled[0].spec.schedule.time_zone) == ("0 2 * * *", "Europe/London")
