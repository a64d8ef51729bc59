"""Pure decisions of the training stages: which (job, family) units run, their fingerprints, thread plans, the CPU→GPU gate.

Called by `trainpipe.training.stage`; no I/O besides `unit_state` reading a unit's metrics/error files.
Everything here is table-tested in tests/unit/test_training_units.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import trainpipe
from trainpipe.contract.names import TaskType, TrainingType
from trainpipe.contract.plan import TrainingJob, TrainingPlan
from trainpipe.contract.targets import horizon_minutes
from trainpipe.families.catalogue import ALL_FAMILIES, FAMILIES, STAGES, UnknownFamilyError, normalise_family
from trainpipe.io.layout import Layout

ERROR_FILE_SUFFIX = ".error.txt"


@dataclass(frozen=True)
class Unit:
    """One model to train: a plan job × a family."""

    job_id: str
    family: str
    target: str
    symbol: str | None
    task: TaskType


@dataclass(frozen=True)
class Skip:
    job_id: str
    family: str
    reason: str


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; use one of {', '.join(STAGES)}")
    return stage


def plan_units(plan: TrainingPlan, stage: str, families: Sequence[str] | None) -> tuple[list[Unit], list[Skip]]:
    """Units of `stage`: per job, its model_families ∩ the stage's families ∩ `families` (None = no filter).

    Order: catalogue family order, then plan job order — one worker process per family runs its units
    in that order. Blocked jobs, unknown family names in a job and unsupported tasks become Skips.
    """
    check_stage(stage)
    allowed = None if families is None else {normalise_family(f) for f in families}
    units: list[Unit] = []
    skips: list[Skip] = []
    for job in plan.jobs:
        if job.training_type is TrainingType.BLOCKED:
            continue
        for raw in job.model_families:
            try:
                name = normalise_family(raw)
            except UnknownFamilyError:
                if stage == "cpu":  # report once, not in both stages
                    skips.append(Skip(job.job_id, raw, f"unknown model family {raw!r} in the plan"))
                continue
            spec = FAMILIES[name]
            if spec.stage != stage or (allowed is not None and name not in allowed):
                continue
            if TaskType(job.task) not in spec.tasks:
                skips.append(Skip(job.job_id, name, f"{TaskType(job.task).value} targets are not supported by {name!r}"))
                continue
            units.append(Unit(job.job_id, name, job.target, job.symbol, TaskType(job.task)))
    order = {name: i for i, name in enumerate(ALL_FAMILIES)}
    job_order = {job.job_id: i for i, job in enumerate(plan.jobs)}
    units.sort(key=lambda u: (order[u.family], job_order[u.job_id]))
    return units, skips


def group_by_family(units: Sequence[Unit]) -> dict[str, list[Unit]]:
    """Units per family, families in catalogue order (dict order)."""
    out: dict[str, list[Unit]] = {}
    for unit in units:
        out.setdefault(unit.family, []).append(unit)
    return {name: out[name] for name in ALL_FAMILIES if name in out}


def aux_targets_for(job: TrainingJob, plan: TrainingPlan, family: str) -> list[str]:
    """Auxiliary targets for multi-task heads: other regression targets of the plan whose horizon is not longer.

    A longer-horizon aux label of a training row would reach past the purge gap into the holdout.
    """
    if family != "multi_task":
        return []
    own = horizon_minutes(job.target)
    out = []
    for target in sorted({j.target for j in plan.jobs}):
        if target == job.target or not target.startswith("fwd_ret_"):
            continue
        h = horizon_minutes(target)
        if own is not None and h is not None and h <= own:
            out.append(target)
    return out


def unit_fingerprint(
    plan: TrainingPlan,
    job: TrainingJob,
    family: str,
    params: Mapping[str, Any],
    *,
    holdout_fraction: float,
    embargo_bars: int,
    seed: int,
    interval: str | None,
) -> str:
    """Digest of everything that determines the unit's model: a rerun with the same digest is skipped."""
    payload = {
        "job": job.model_dump(mode="json"),
        "family": family,
        "params": dict(params),
        "holdout_fraction": holdout_fraction,
        "embargo_bars": embargo_bars,
        "seed": seed,
        "interval": interval,
        "data_digest": plan.metadata.data_digest,
        "code": trainpipe.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


UnitState = Literal["done", "failed", "missing", "stale"]


def error_path(layout: Layout, job_id: str, family: str):
    return layout.models_dir / job_id / f"{family}{ERROR_FILE_SUFFIX}"


def unit_state(layout: Layout, job_id: str, family: str, fingerprint: str) -> UnitState:
    """done: metrics.json with this fingerprint; failed: an error file; stale: a model of other inputs; missing: nothing."""
    metrics = layout.model_dir(job_id, family) / "metrics.json"
    if metrics.exists():
        try:
            if json.loads(metrics.read_text()).get("fingerprint") == fingerprint:
                return "done"
        except (OSError, ValueError):
            pass
        return "stale"
    if error_path(layout, job_id, family).exists():
        return "failed"
    return "missing"


def gate_problems(states: Mapping[tuple[str, str], UnitState]) -> list[str]:
    """The CPU units that block the GPU stage: every one must be 'done' (failed, missing or stale blocks)."""
    return [f"{job_id}/{family}: {state}" for (job_id, family), state in sorted(states.items()) if state != "done"]


# ---- thread plans -------------------------------------------------------------------------------

# Per thread kind of the catalogue: (OpenMP threads, BLAS threads, framework threads) as a share of the
# CPUs: "all" = every CPU of the pod, 1 = one. Tree libraries parallelise with OpenMP and must not
# also get BLAS threads; BLAS-heavy sklearn/scipy code the reverse; TF/Torch run their own pools.
THREAD_PLANS: Mapping[str, tuple[str | int, str | int, str | int]] = {
    "openmp": ("all", 1, "all"),
    "blas": (1, "all", "all"),
    "python": (1, 1, 1),
    "tf": (1, 1, "all"),
    "torch": ("all", 1, "all"),
}

_FIXED_ENV = {
    "MKL_THREADING_LAYER": "GNU",  # libgomp everywhere: Intel's libiomp5 next to libgomp crashes or oversubscribes
    "OMP_DYNAMIC": "FALSE",
    "OMP_PROC_BIND": "FALSE",
    "KMP_BLOCKTIME": "0",
    "KMP_AFFINITY": "disabled",
    "PYTHONHASHSEED": "0",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",  # oneDNN float reordering breaks run-to-run determinism
    "TF_DETERMINISTIC_OPS": "1",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # required for deterministic cuBLAS in torch
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "TOKENIZERS_PARALLELISM": "false",
}


def thread_env(family: str, cpu_count: int) -> dict[str, str]:
    """Environment for the worker process of `family` on a machine with `cpu_count` CPUs.

    CPU-stage families get CUDA_VISIBLE_DEVICES="" so they can never touch a GPU, and
    TRAINPIPE_BLOCK_FRAMEWORKS=1 so an accidental TensorFlow/Torch import fails loudly.
    GPU-stage families keep whatever CUDA_VISIBLE_DEVICES the pod has.
    """
    spec = FAMILIES[normalise_family(family)]
    n = max(1, int(cpu_count))
    omp, blas, framework = (n if v == "all" else int(v) for v in THREAD_PLANS[spec.threads])
    env = dict(_FIXED_ENV)
    env.update({
        "OMP_NUM_THREADS": str(omp),
        "MKL_NUM_THREADS": str(blas),
        "OPENBLAS_NUM_THREADS": str(blas),
        "NUMEXPR_NUM_THREADS": str(blas),
        "VECLIB_MAXIMUM_THREADS": str(blas),
        "TRAINPIPE_NUM_THREADS": str(framework),
    })
    if spec.stage == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["TRAINPIPE_BLOCK_FRAMEWORKS"] = "1"
    return env
