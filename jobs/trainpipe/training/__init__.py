"""The training stages' CLI-independent API; `trainpipe train`, the local runner and the benchmarks import from here.

    run_training_stage(plan, 'cpu'|'gpu', layout, data_dir, *, interval, families, holdout_fraction,
                       embargo_bars, seed, on_progress=None, params=None, panel_loader=…, isolate=True) -> StageResult
    run_training_unit(plan, 'cpu'|'gpu', family, index, layout, data_dir, *, plan_path, …, reuse=None) -> (WorkUnit, UnitRecord)
    run_training(plan, layout, data_dir, **same keywords) -> {'cpu': StageResult, 'gpu': StageResult}
    read_all_metrics(layout) -> list[ModelMetrics]
    measure_families(data_dir, …) -> list[dict]   (per-family train seconds / peak RSS / device for BENCHMARKS.md)

Names resolve lazily so `import trainpipe.training` stays light (and free of import cycles with families).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "run_training_stage": "trainpipe.training.stage",
    "run_training": "trainpipe.training.stage",
    "run_training_unit": "trainpipe.training.stage",
    "StageResult": "trainpipe.training.stage",
    "UnitRecord": "trainpipe.training.stage",
    "StageGateError": "trainpipe.training.stage",
    "ModelMetrics": "trainpipe.training.metrics_file",
    "read_all_metrics": "trainpipe.training.metrics_file",
    "measure_families": "trainpipe.training.bench",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainpipe.training' has no attribute {name!r}")
