"""The schema of each model's `metrics.json` and `read_all_metrics(layout)`; written by the stage worker, read by the report.

Field notes: `peak_rss_mb` is the peak resident memory of the family's worker process up to the end of
this unit (one process trains every job of a family, so later units report a running maximum);
`device` is the device that trained the model ("cpu" or "cuda:0 (<card>)"); `budget` is what a neural
family trained with on it (a CPU gets a smaller budget), absent in older files.

v2 added the intervals (`<figure>_se`, `_low`, `_high`, `n_eff` in `metrics`; the Sharpe's in `backtest`,
averaged over its rebalance phases). v3 added `timing` (whether the model times anything at all), the
per-timestamp figures of cross-sectional jobs as the headline ones (pooled ones beside them, `_pooled`,
and `<figure>_method` saying which is which), Brier score and log loss for classifiers, `undefined` (why
a figure is null), and backtests net of `cost_bps` with the long-only book against buy-and-hold.
v1 and v2 files still read: their figures show without what they lack, and the report judges their
timing from what they hold.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trainpipe.io.layout import Layout

METRICS_FILE = "metrics.json"
METRICS_SCHEMA = "trainpipe.io/model-metrics/v3"


class Timing(BaseModel):
    """Whether a model's holdout predictions time anything; one without timing is never ranked as if it had skill."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    has_timing: bool
    kind: str | None = Field(None, description="Why not, as a word (`trainpipe.training.timing.NoTiming`); null when it has timing")
    reason: str = Field("", description="Why not, in a sentence a reader of the report can act on")
    position_changes: int | None = Field(None, ge=0, description="Times the long/short book changed between consecutive holdout timestamps")


class ModelMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = METRICS_SCHEMA
    job_id: str
    target: str
    symbol: str | None
    family: str
    stage: str
    task: str
    device: str
    n_train: int = Field(ge=0)
    n_test: int = Field(ge=0)
    train_seconds: float = Field(ge=0)
    peak_rss_mb: float = Field(ge=0)
    metrics: dict[str, Any] = Field(description="Holdout metrics: ic, rank_ic, auc, hit_rate (+_method, _pooled), r2 or brier/log_loss, …, "
                                    "each with _se, _low, _high; `undefined` says why a null one is null")
    backtest: dict[str, Any] = Field(description="Backtests of the holdout predictions net of cost_bps: long/short against zero (sharpe with _se, _low, _high), "
                                     "long-only against buy-and-hold (long_only_excess_sharpe); or {'available': false, 'reason': …}")
    timing: Timing | None = Field(None, description="Whether the predictions time anything (null in files before v3: the report judges those from their figures)")
    fingerprint: str = Field(description="Digest of job, family, params, split and data; a rerun with the same one is skipped")
    holdout: dict[str, Any] = Field(default_factory=dict, description="Split facts: fraction, horizon/embargo/purge bars, train end, test start")
    params: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] | None = Field(None, description="Neural families: device kind, epochs, patience, batch size, lookback in force and why "
                                          "(trainpipe.families.budget); None for the others")


def read_all_metrics(layout: Layout) -> list[ModelMetrics]:
    """Every `models/<job_id>/<family>/metrics.json` under the layout, sorted by (job_id, family)."""
    out = []
    for path in sorted(layout.models_dir.glob(f"*/*/{METRICS_FILE}")):
        if path.parent.name.startswith("."):
            continue  # an atomic_dir temp folder of a unit in progress
        out.append(ModelMetrics.model_validate(json.loads(path.read_text())))
    return sorted(out, key=lambda m: (m.job_id, m.family))
