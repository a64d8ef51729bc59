"""The schema of each model's `metrics.json` and `read_all_metrics(layout)`; written by the stage worker, read by the report.

Field notes: `peak_rss_mb` is the peak resident memory of the family's worker process up to the end of
this unit (one process trains every job of a family, so later units report a running maximum);
`device` is the device that trained the model ("cpu" or "cuda:0 (<card>)"); `budget` is what a neural
family trained with on it (a CPU gets a smaller budget), absent in older files.

v2 added the intervals (`<figure>_se`, `_low`, `_high`, `n_eff` in `metrics`; the Sharpe's in `backtest`,
averaged over its rebalance phases). v1 files still read: their figures show without an interval.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trainpipe.io.layout import Layout

METRICS_FILE = "metrics.json"
METRICS_SCHEMA = "trainpipe.io/model-metrics/v2"


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
    metrics: dict[str, Any] = Field(description="Holdout metrics: ic, rank_ic(+method), r2 or auc, hit_rate, …, each with _se, _low, _high")
    backtest: dict[str, Any] = Field(description="Long/short backtest of the holdout predictions (Sharpe with _se, _low, _high), or {'available': false, 'reason': …}")
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
