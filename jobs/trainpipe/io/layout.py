"""Every path of the output layout, in one place; stages, the runner, the report and the operator use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """The output folder of one pipeline; all artefact paths derive from `root`."""

    root: Path

    # ranking
    @property
    def ranking_dir(self) -> Path:
        return self.root / "ranking"

    @property
    def rankings_parquet(self) -> Path:
        return self.ranking_dir / "target_rankings.parquet"

    @property
    def rankings_json(self) -> Path:
        return self.ranking_dir / "target_rankings.json"

    def rank_part(self, index: int, units: int) -> Path:
        """One target group's scores when rank fans out (stages.rank.targetGroups): unit `index` of `units`, merged by the aggregate step."""
        return self.ranking_dir / "parts" / f"{index:03d}-of-{units:03d}.json"

    @property
    def data_pins_json(self) -> Path:
        """The data files rank read and their digest: later stages check they read the same bars."""
        return self.ranking_dir / "data_files.json"

    @property
    def oos_scores_parquet(self) -> Path:
        """Per-target, per-symbol out-of-sample scores from ranking; `plan` builds routing candidates from it."""
        return self.ranking_dir / "oos_scores.parquet"

    # selection
    @property
    def selection_dir(self) -> Path:
        return self.root / "selection"

    def selected_features(self, target: str) -> Path:
        return self.selection_dir / target / "selected_features.json"

    def feature_scores(self, target: str) -> Path:
        return self.selection_dir / target / "feature_scores.parquet"

    @property
    def selection_summary(self) -> Path:
        return self.selection_dir / "selection_summary.json"

    # plan
    @property
    def metrics_dir(self) -> Path:
        return self.root / "METRICS"

    @property
    def routing_candidates(self) -> Path:
        return self.metrics_dir / "routing_candidates.parquet"

    @property
    def routing_plan_dir(self) -> Path:
        return self.metrics_dir / "routing_plan"

    @property
    def routing_plan_json(self) -> Path:
        return self.routing_plan_dir / "routing_plan.json"

    @property
    def routing_plan_md(self) -> Path:
        return self.routing_plan_dir / "routing_plan.md"

    @property
    def training_plan_dir(self) -> Path:
        return self.root / "globals" / "training_plan"

    @property
    def master_training_plan(self) -> Path:
        return self.training_plan_dir / "master_training_plan.json"

    @property
    def training_plan_mirror(self) -> Path:
        return self.training_plan_dir / "training_plan.json"

    @property
    def training_plan_md(self) -> Path:
        return self.training_plan_dir / "training_plan.md"

    @property
    def legacy_training_plan_dir(self) -> Path:
        """Where older runs of the seed wrote the plan; `train` still looks here (never written)."""
        return self.metrics_dir / "training_plan"

    # training
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, job_id: str, family: str) -> Path:
        return self.models_dir / job_id / family

    # run bookkeeping
    @property
    def state_dir(self) -> Path:
        """Stage completion records (digest of inputs) used by the cache."""
        return self.root / ".trainpipe"

    def stage_record(self, stage: str) -> Path:
        return self.state_dir / f"{stage}.json"

    def select_unit_record(self, target: str) -> Path:
        """Completion record of one target's selection; each select pod writes only its own."""
        return self.state_dir / "units" / "select" / f"{_file_part(target, 'target')}.json"

    def unit_work_dir(self, stage: str, unit_id: str) -> Path:
        """Working files (request, results, log, result.json) of one training unit run on its own (a pod's unit)."""
        return self.state_dir / "units" / stage / _file_part(unit_id, "unit id")

    def training_work_dir(self, stage: str) -> Path:
        """Working files of a whole training stage run in one process (`trainpipe train --stage`, `trainpipe run`)."""
        return self.state_dir / "training" / stage

    @property
    def tracking_record(self) -> Path:
        """What tracking the run in MLflow came to (`contract.tracking.TrackingOutcome`): tracked where, or why not."""
        return self.state_dir / "tracking.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def model_evidence(self) -> Path:
        """Run-level figures of the trained models (deflated Sharpe, best-of-N noise lines), written with the report."""
        return self.metrics_dir / "model_evidence.json"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _file_part(name: str, what: str) -> str:
    # Target names are data column names: a '/' or '..' would write outside the state folder.
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"{what} {name!r} cannot be a file name; rename it")
    return name
