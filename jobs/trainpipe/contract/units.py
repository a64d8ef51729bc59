"""Work units: the ordered list of (plan job × family) each training stage runs, with Kubernetes-safe ids.

Operator and jobs compute it from the same plan with these functions, so index `i` of a family's Indexed
Job means the same unit on both sides. Pure: no I/O, no model library.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from trainpipe.contract.families import FAMILY_NAMES, FAMILY_STAGE, FAMILY_TASKS
from trainpipe.contract.names import Stage, TaskType, TrainingType
from trainpipe.contract.plan import TrainingPlan
from trainpipe.contract.stages import STAGES

# A unit id is used in folder names, log lines and status messages; DNS-label rules keep it usable
# as a Kubernetes name part too. Long ids keep a readable head and a digest of the whole.
MAX_ID_LENGTH = 63
_HASH_LENGTH = 10


def dns_label(text: str, max_length: int = MAX_ID_LENGTH) -> str:
    """`text` as a DNS-1123 label (lowercase alphanumerics and '-'); over `max_length` it is cut and hashed."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label) or "x"
    if len(label) <= max_length and label == text:
        return label
    # Rewritten (e.g. '_' → '-') or cut: a digest of the original keeps two spellings apart.
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]
    head = label[: max_length - _HASH_LENGTH - 1].rstrip("-")
    return f"{head}-{digest}"


_PLAIN_TICKER = re.compile(r"[A-Z0-9.]+")
_SYMBOL_HASH_LENGTH = 8


def symbol_key(symbol: str) -> str:
    """A symbol's part of job ids (and so of unit ids and Kubernetes names): lowercase [a-z0-9.-], injective.

    A plain ticker (AAPL, BRK.B) is just lower-cased: one-to-one on upper-case letters, digits and '.'.
    Any other name (^VIX, ES=F, EURUSD=X, aapl) gets a readable slug plus a digest of the exact name, so
    '^VIX' and '_VIX', or 'AAPL' and 'aapl', never share an id: a plain ticker's key has no '-', and
    every other key ends in '-' and the digest.
    """
    if _PLAIN_TICKER.fullmatch(symbol):
        return symbol.lower()
    slug = re.sub(r"[^a-z0-9.]+", "-", symbol.lower()).strip("-") or "sym"
    return f"{slug}-{hashlib.sha256(symbol.encode()).hexdigest()[:_SYMBOL_HASH_LENGTH]}"


@dataclass(frozen=True)
class WorkUnit:
    """One model to train: a plan job × a family, in the stage that family belongs to."""

    job_id: str
    family: str
    stage: Stage
    target: str
    symbol: str | None
    task: TaskType

    @property
    def unit_id(self) -> str:
        return unit_id(self.job_id, self.family)


@dataclass(frozen=True)
class SkippedUnit:
    job_id: str
    family: str
    reason: str


def unit_id(job_id: str, family: str) -> str:
    """Stable, Kubernetes-safe id of the unit (job_id allows '_' and '.', and has no length cap)."""
    return dns_label(f"{job_id}-{family}")


def stage_units(plan: TrainingPlan, stage: Stage, families: Sequence[str] | None = None) -> tuple[list[WorkUnit], list[SkippedUnit]]:
    """Units of `stage`, ordered by family (table order) then plan job order; and what was skipped, with why.

    Per job: its model_families ∩ the stage's families ∩ `families` (None = no filter). Blocked jobs are
    not units; a family name the table does not know, or a task the family cannot learn, is a skip.
    """
    if stage not in STAGES.training:
        raise ValueError(f"{stage!r} is not a training stage; use {' or '.join(STAGES.training)}")
    allowed = None if families is None else set(families)
    units: list[WorkUnit] = []
    skips: list[SkippedUnit] = []
    for job in plan.jobs:
        if job.training_type is TrainingType.BLOCKED:
            continue
        for name in job.model_families:
            if name not in FAMILY_STAGE:
                if stage is Stage.CPU:  # reported once, not by both stages
                    skips.append(SkippedUnit(job.job_id, name, f"unknown model family {name!r} in the plan"))
                continue
            if FAMILY_STAGE[name] is not stage or (allowed is not None and name not in allowed):
                continue
            task = TaskType(job.task)
            if task not in FAMILY_TASKS[name]:
                skips.append(SkippedUnit(job.job_id, name, f"{task.value} targets are not supported by {name!r}"))
                continue
            units.append(WorkUnit(job.job_id, name, stage, job.target, job.symbol, task))
    order = {name: i for i, name in enumerate(FAMILY_NAMES)}
    job_order = {job.job_id: i for i, job in enumerate(plan.jobs)}
    units.sort(key=lambda u: (order[u.family], job_order[u.job_id]))
    return units, skips


def family_units(plan: TrainingPlan, family: str) -> list[WorkUnit]:
    """The units of one family, in index order: index i of the family's Indexed Job is element i."""
    if family not in FAMILY_STAGE:
        raise ValueError(f"unknown model family {family!r}; valid families: {', '.join(FAMILY_NAMES)}")
    units, _ = stage_units(plan, FAMILY_STAGE[family], [family])
    return units


def unit_counts(plan: TrainingPlan) -> dict[str, int]:
    """Units per family (families with at least one unit, table order): the completions of each Indexed Job."""
    counts: dict[str, int] = {}
    for stage in STAGES.training:
        for unit in stage_units(plan, Stage(stage))[0]:
            counts[unit.family] = counts.get(unit.family, 0) + 1
    return counts
