"""How a training call trains its units, besides the plan: one `TrainingSettings`, built once where the run starts and passed down.

Built by the runner from the pipeline spec (`trainpipe.runner.steps.train.training_settings`), by the
benchmarks and by tests; read by `trainpipe.training.stage` and, for the split, by the unit fingerprints
of `trainpipe.training.units`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainpipe.contract.pipeline import PipelineSpec, RankingSpec, TrainingSpec
from trainpipe.families.base import check_params
from trainpipe.families.catalogue import resolve_families

DEFAULT_PANEL_LOADER = "trainpipe.data.loading:load_panel"
ProgressFn = Callable[[dict[str, Any]], None]
# (job_id, family, fingerprint) -> the run folder a finished copy of the unit came from, or None.
ReuseModel = Callable[[str, str, str], str | None]


@dataclass(frozen=True)
class TrainingSettings:
    """What every unit of one training call is trained with. The split (holdout_fraction, embargo_bars, seed,
    interval), the backtests' cost_bps and the family's parameters are part of each unit's fingerprint; the rest
    says how to run it."""

    data_dir: Path | str  # a folder, or an object-store URI (s3://bucket/prefix)
    interval: str | None = None
    # The defaults are the spec's own, so a call made without a spec trains what a default pipeline would.
    holdout_fraction: float = TrainingSpec.model_fields["holdout_fraction"].default
    embargo_bars: int = RankingSpec.model_fields["embargo_bars"].default
    seed: int = PipelineSpec.model_fields["seed"].default
    cost_bps: float = TrainingSpec.model_fields["cost_bps"].default  # what the backtests charge on turnover; part of the fingerprint too
    # The family filter (any spelling the catalogue accepts); None trains every family of the plan. The GPU
    # gate covers the CPU units within the same filter.
    families: tuple[str, ...] | None = None
    params: Mapping[str, Mapping[str, Any]] | None = None  # family → parameter overrides
    panel_loader: str = DEFAULT_PANEL_LOADER  # 'package.module:function' the worker loads the panel with
    isolate: bool = True  # False runs the workers in this process: for debugging only, frameworks then share it
    timeout_s: float | None = None  # a worker process (one family, or one unit) still running after this is killed
    on_progress: ProgressFn | None = None  # receives the stage's events: family_start, unit_done, stage_done
    reuse: ReuseModel | None = None  # may copy a finished unit from another run instead of training it

    def __post_init__(self) -> None:
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.embargo_bars < 0:
            raise ValueError(f"embargo_bars must be >= 0, got {self.embargo_bars}")
        if self.cost_bps < 0:
            raise ValueError(f"cost_bps must be >= 0 (training.costBps), got {self.cost_bps}")

    def params_for(self, family: str) -> dict[str, Any]:
        """The family's defaults with this call's overrides; a bad parameter raises FamilyParamError."""
        return check_params(family, (self.params or {}).get(family))

    def family_filter(self) -> list[str] | None:
        """`families` as catalogue names (an unknown one raises), or None for every family."""
        return None if self.families is None else resolve_families(self.families, None)

    def notify(self, event: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(event)
