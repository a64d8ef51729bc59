"""Pure decisions of the training stages: which (job, family) units run, their fingerprints, thread plans, the CPU→GPU gate.

Called by `trainpipe.training.stage`; no I/O besides `unit_state` reading a unit's metrics/error files.
Which units a plan has, and in which order, comes from `trainpipe.contract.units` — the functions the
operator sizes its Indexed Jobs with — so unit `i` of a family means the same model on both sides.
Everything here is table-tested in tests/unit/test_training_units.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Literal

import trainpipe
from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.names import Stage
from trainpipe.contract.plan import TrainingJob, TrainingPlan
from trainpipe.contract.targets import horizon_minutes
from trainpipe.contract.units import SkippedUnit, WorkUnit, family_units, stage_units
from trainpipe.families.catalogue import ALL_FAMILIES, FAMILIES, STAGES, normalise_family
from trainpipe.io.layout import Layout
from trainpipe.training.settings import TrainingSettings

ERROR_FILE_SUFFIX = ".error.txt"


class UnitAddressError(ValueError, CommandFailure):
    """A unit address that names a family of the other training stage; the message names the right stage."""

    exit_code = ExitCode.INVALID_SPEC


class UnitNotFoundError(LookupError, CommandFailure):
    """A unit index (or target) that the artefacts on the volume do not have; the message says how many there are."""

    exit_code = ExitCode.MISSING_INPUT


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; use one of {', '.join(STAGES)}")
    return stage


def plan_units(plan: TrainingPlan, stage: str, families: Sequence[str] | None) -> tuple[list[WorkUnit], list[SkippedUnit]]:
    """Units of `stage` (`contract.units.stage_units`), with `families` given in any spelling the catalogue accepts."""
    allowed = None if families is None else [normalise_family(f) for f in families]
    return stage_units(plan, Stage(check_stage(stage)), allowed)


def family_of_stage(family: str, stage: str) -> str:
    """Catalogue name of `family`, which must be a family of training stage `stage`."""
    name = normalise_family(family)
    own = FAMILIES[name].stage
    if own != check_stage(stage):
        raise UnitAddressError(f"family {name!r} trains in the {own} stage, not {stage}; use --stage {own}")
    return name


def unit_at(plan: TrainingPlan, stage: str, family: str, index: int) -> WorkUnit:
    """Unit `index` of `family` in the plan: element `index` of `contract.units.family_units`, as the operator counts them."""
    name = family_of_stage(family, stage)
    units = family_units(plan, name)
    if not 0 <= index < len(units):
        raise UnitNotFoundError(
            f"the plan has {len(units)} {name} unit(s) (indexes 0..{len(units) - 1}), so there is no unit {index}; pass an index "
            f"below {len(units)}, or rerun `trainpipe plan` if the Job was sized from another plan"
            if units else
            f"the plan has no {name} unit, so there is no unit {index}; rerun `trainpipe plan` with {name} among the families"
        )
    return units[index]


def group_by_family(units: Sequence[WorkUnit]) -> dict[str, list[WorkUnit]]:
    """Units per family, families in catalogue order (dict order)."""
    out: dict[str, list[WorkUnit]] = {}
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


def unit_fingerprint(plan: TrainingPlan, job: TrainingJob, family: str, settings: TrainingSettings) -> str:
    """Digest of everything that determines the unit's model and its metrics.json: a rerun with the same digest is skipped.

    The payload's keys are those of the first fingerprints: another spelling would retrain every unit once.
    """
    payload = {
        "job": job.model_dump(mode="json"),
        "family": family,
        "params": settings.params_for(family),
        "holdout_fraction": settings.holdout_fraction,
        "embargo_bars": settings.embargo_bars,
        "seed": settings.seed,
        "interval": settings.interval,
        # Not the model's, but its metrics.json's: a unit scored at other costs is not done.
        "cost_bps": settings.cost_bps,
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


def family_slots(families: int, cpus: int) -> tuple[int, int]:
    """(workers at once, CPUs each) for a stage that trains `families` families on `cpus` CPUs.

    One worker per CPU, each with an equal share: a family's models are small enough that two threads
    seldom make one fit twice as fast, while a second family's worker start-up (interpreter, framework
    imports, panel load) and training fill the core the first leaves idle. A stage with one family, or
    one CPU, keeps one worker with every CPU.
    """
    workers = max(1, min(int(families), int(cpus)))
    return workers, max(1, int(cpus) // workers)


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
