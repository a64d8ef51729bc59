"""Per-family train time, peak memory and device on a data set, for `make bench` (BENCHMARKS.md is written elsewhere).

`measure_families` trains one cross-sectional job (first regression target, all features) for each
family through the real stages (isolated worker processes, CPU stage then GPU stage) into a scratch
output folder and returns one row per family.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainpipe.contract.names import Route, TaskType, TrainingType
from trainpipe.contract.plan import PlanSummary, TrainingJob, TrainingPlan, TrainingPlanMetadata
from trainpipe.contract.stages import STAGES
from trainpipe.families.catalogue import FAMILIES, resolve_families
from trainpipe.io.layout import Layout


def benchmark_plan(target: str, features: Sequence[str], families: Sequence[str], *, data_digest: str = "bench") -> TrainingPlan:
    """A one-job cross-sectional plan training `families` on `target` (also used by tests)."""
    job = TrainingJob(job_id=f"bench_{target}".lower(), target=target, symbol=None, route=Route.CROSS_SECTIONAL,
                      training_type=TrainingType.CROSS_SECTIONAL, task=TaskType.REGRESSION if target.startswith("fwd_ret_") else TaskType.BINARY,
                      model_families=list(families), features=list(features), priority=0, estimated_samples=0, reason="benchmark")
    meta = TrainingPlanMetadata(generated_at="1970-01-01T00:00:00Z", run_id="bench", code_version="bench", config_digest="bench",
                                data_digest=data_digest, routing_plan_path="none", model_families=list(families), model_families_requested=None)
    summary = PlanSummary(total_jobs=1, by_route={Route.CROSS_SECTIONAL.value: 1}, by_type={TrainingType.CROSS_SECTIONAL.value: 1},
                          by_priority={"0": 1}, total_cs_jobs=1, total_symbol_jobs=0, total_blocked=0)
    return TrainingPlan(metadata=meta, jobs=[job], summary=summary)


def measure_families(
    data_dir: Path,
    families: Sequence[str] | None = None,
    *,
    interval: str | None = None,
    target: str | None = None,
    seed: int = 42,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    panel_loader: str | None = None,
    out_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Rows {family, stage, seconds, peak_rss_mb, device, n_train, ic, rank_ic, status} in catalogue order."""
    from trainpipe.training.metrics_file import read_all_metrics
    from trainpipe.training.settings import DEFAULT_PANEL_LOADER, TrainingSettings
    from trainpipe.training.stage import run_training_stage
    from trainpipe.training.worker import _load_callable

    loader = panel_loader or DEFAULT_PANEL_LOADER
    panel = _load_callable(loader)(Path(data_dir), None, interval=interval)
    chosen = target or next((t for t in panel.targets if t.startswith("fwd_ret_")), None)
    if chosen is None:
        raise ValueError(f"{data_dir}: no fwd_ret_* target to benchmark on; pass target=")
    names = resolve_families(families, None if families else "all")
    plan = benchmark_plan(chosen, panel.features, names)
    root = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="trainpipe-bench-"))
    layout = Layout(root)
    records = {}
    settings = TrainingSettings(Path(data_dir), interval=interval, holdout_fraction=0.2, embargo_bars=5, seed=seed, families=tuple(names),
                                params=params, panel_loader=loader)
    for stage in STAGES.training:
        result = run_training_stage(plan, stage, layout, settings)
        records.update({r.family: r for r in result.records})
    metrics = {m.family: m for m in read_all_metrics(layout)}
    rows = []
    for name in names:
        m = metrics.get(name)
        rec = records.get(name)
        rows.append({
            "family": name, "stage": FAMILIES[name].stage,
            "seconds": m.train_seconds if m else None, "peak_rss_mb": m.peak_rss_mb if m else None,
            "device": m.device if m else None, "n_train": m.n_train if m else None,
            "ic": m.metrics.get("ic") if m else None, "rank_ic": m.metrics.get("rank_ic") if m else None,
            "status": rec.status if rec else "not run", "error": rec.reason if rec and rec.status == "failed" else "",
        })
    return rows
