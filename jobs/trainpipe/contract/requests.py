"""What a training worker is asked to do: one family's units of one stage; written by `trainpipe.training.stage`, read by the worker.

The request travels as `request.json` (camelCase, unknown keys refused) through `trainpipe.io.requests`, or
in memory when a stage runs its workers in-process. Its split settings are part of every unit's fingerprint.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from trainpipe.contract.base import Contract


class UnitRequest(Contract):
    """One unit (plan job × the request's family) and what it is trained with."""

    job_id: str = Field(min_length=1, description="The plan job the unit trains")
    fingerprint: str = Field(description="Recorded in the unit's metrics.json; a later run skips the unit when it matches")
    params: dict[str, Any] = Field(default_factory=dict, description="The family's parameters, already checked")


class WorkerRequest(Contract):
    """Every unit of one family in one stage, trained in one worker process on one panel."""

    family: str
    stage: str
    plan_path: str = Field(description="The plan file the units belong to (absolute)")
    plan_digest: str | None = Field(None, description="The plan's digest when the request was made; another digest means the plan was rewritten")
    layout_root: str = Field(description="The run's output folder (absolute)")
    data_dir: str
    panel_loader: str = Field(pattern=r"^[\w.]+:\w+$", description="'package.module:function' that loads the panel")
    results_path: str = Field(description="One JSON line per unit is appended here as soon as the unit ends")
    holdout_fraction: float = Field(gt=0, lt=1)
    embargo_bars: int = Field(ge=0)
    seed: int
    interval: str | None = None
    cost_bps: float = Field(0.0, ge=0, description="Trading cost the backtests charge on turnover, in basis points (training.costBps)")
    units: tuple[UnitRequest, ...]
