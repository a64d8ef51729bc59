"""What tracking a run decides without MLflow: the run's tags, the names of experiments and registered models, the best model per target.

Pure; called by `trainpipe.tracking.mlflow_log` and tested on its own (`tests/unit/test_tracking_choices.py`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from trainpipe.contract.plan import TrainingPlan
from trainpipe.contract.tracking import TrackingSpec
from trainpipe.training.metrics_file import ModelMetrics

TAG_PREFIX = "trainpipe."
# The tag that finds a pipeline run's MLflow run again: rerunning the step for the same run finishes that one, never a second.
RUN_KEY_TAG = TAG_PREFIX + "run_key"
UNIT_TAG = TAG_PREFIX + "unit"
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is: the pipeline (and its namespace on a cluster), the run id, the plan it trained, the code that ran it."""

    pipeline: str
    namespace: str | None
    run_id: str
    plan_digest: str | None
    code_version: str

    @property
    def key(self) -> str:
        """Unique per pipeline run: the same key on a rerun of the tracking step, another for another pipeline or run."""
        return "/".join(p for p in (self.namespace, self.pipeline, self.run_id) if p)

    def tags(self) -> dict[str, str]:
        tags = {RUN_KEY_TAG: self.key, TAG_PREFIX + "pipeline": self.pipeline, TAG_PREFIX + "run_id": self.run_id,
                TAG_PREFIX + "code_version": self.code_version}
        if self.namespace:
            tags[TAG_PREFIX + "namespace"] = self.namespace
        if self.plan_digest:
            tags[TAG_PREFIX + "plan_digest"] = self.plan_digest
        return tags


def experiment_name(spec: TrackingSpec, identity: RunIdentity) -> str:
    if spec.experiment:
        return spec.experiment
    return "/".join(p for p in ("trainpipe", identity.namespace, identity.pipeline) if p)


def registered_name(spec: TrackingSpec, identity: RunIdentity, target: str) -> str:
    """`<prefix>-<target>`, a name MLflow accepts (no '/' nor ':'); a target whose name needs changing gets a digest of it, so two never meet."""
    prefix = spec.model_prefix or "-".join(_safe(p) for p in (identity.namespace, identity.pipeline) if p)
    safe = _safe(target)
    if safe != target:
        safe += "-" + hashlib.sha256(target.encode()).hexdigest()[:6]
    return f"{prefix}-{safe}"


def _safe(text: str) -> str:
    return _SAFE.sub("_", text)


def unit_run_name(m: ModelMetrics) -> str:
    return f"{m.job_id}/{m.family}"


def criterion_of(plan: TrainingPlan, job_id: str, task: str) -> str:
    """The holdout figure the plan judged the job's target by: routing's `metric_name` (ic for returns, auc for labels)."""
    for job in plan.jobs:
        if job.job_id == job_id and isinstance(job.metadata.get("metric_name"), str):
            return str(job.metadata["metric_name"])
    return "auc" if task == "binary" else "ic"


@dataclass(frozen=True)
class Best:
    """The model chosen for a target, the figure it was chosen by, and its value."""

    target: str
    metrics: ModelMetrics
    criterion: str
    value: float


def unpickable_reason(m: ModelMetrics, criterion: str) -> str | None:
    """Why a model may not be the best of its target (no timing, no value of the criterion), or None."""
    if m.timing is not None and not m.timing.has_timing:
        return f"no timing: {m.timing.reason or m.timing.kind}"
    value = m.metrics.get(criterion)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"no holdout {criterion}"
    return None


def best_per_target(models: Iterable[ModelMetrics], plan: TrainingPlan) -> dict[str, Best]:
    """Per target, the model with the highest holdout value of the plan's criterion; models without timing are never picked.

    Ties go to the first in (job_id, family) order, so the choice does not depend on the order files were read.
    """
    best: dict[str, Best] = {}
    for m in sorted(models, key=lambda m: (m.job_id, m.family)):
        criterion = criterion_of(plan, m.job_id, m.task)
        if unpickable_reason(m, criterion) is not None:
            continue
        value = float(m.metrics[criterion])
        if m.target not in best or value > best[m.target].value:
            best[m.target] = Best(m.target, m, criterion, value)
    return best


def flat_metrics(m: ModelMetrics) -> dict[str, float]:
    """Every finite number of a model's metrics.json as MLflow metrics: holdout figures with their intervals (`<f>_low`, `_high`, `_se`),
    backtest figures as `bt_<f>`, plus n_train, n_test and train_seconds. Keys MLflow refuses are made safe."""
    out: dict[str, float] = {"n_train": float(m.n_train), "n_test": float(m.n_test), "train_seconds": m.train_seconds}
    for prefix, section in (("", m.metrics), ("bt_", m.backtest)):
        for key, value in section.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            out[_safe(prefix + key)] = float(value)
    return out


def flat_params(m: ModelMetrics, features: list[str] | None) -> dict[str, str]:
    """The family's parameters and the unit's identity as MLflow params (strings of at most 6000 characters, MLflow's limit)."""
    params = {f"param.{k}": v for k, v in m.params.items()}
    params.update({"job_id": m.job_id, "target": m.target, "symbol": m.symbol or "", "family": m.family, "stage": m.stage, "task": m.task,
                   "device": m.device})
    if features is not None:
        params["n_features"] = len(features)
        params["features"] = ",".join(features)
    return {_safe(k)[:250]: str(v)[:6000] for k, v in params.items()}
