"""Versioned schemas of what `plan` writes and `train` (and the operator) read: routing plan and training plan."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field, model_validator

from trainpipe.contract.base import Contract
from trainpipe.contract.cut import HoldoutCut
from trainpipe.contract.names import (
    PLAN_SCHEMA_VERSION,
    ROUTING_SCHEMA_VERSION,
    Leakage,
    Route,
    SideState,
    Stability,
    TaskType,
    TrainingType,
)


class RoutingCandidate(Contract):
    """One row of routing_candidates.parquet: out-of-sample evidence for one side of one target."""

    target: str
    symbol: str | None = Field(None, description="None for the cross-sectional row")
    task: TaskType
    horizon_minutes: int | None
    metric_name: str = Field(description="ic for regression, auc for classification")
    score: float
    score_ci_low: float
    score_ci_high: float
    sample_size: int = Field(ge=0, description="Out-of-sample rows the score was computed on")
    n_folds: int = Field(ge=0)
    stability: Stability
    leakage_status: Leakage


class CrossSectionalDecision(Contract):
    enabled: bool
    state: SideState
    score: float | None
    sample_size: int
    metric_name: str
    reason: str


class SymbolDecision(Contract):
    route: Route
    cs_state: SideState
    local_state: SideState
    score: float | None
    sample_size: int
    reasons: list[str]


class TargetRouting(Contract):
    task: TaskType
    horizon_minutes: int | None
    cross_sectional: CrossSectionalDecision
    symbols: dict[str, SymbolDecision]


class PlanMetadata(Contract):
    generated_at: str = Field(description="ISO-8601 UTC; the only field that differs between identical runs")
    run_id: str = Field(description="The operator's run id (--run-id) in a cluster; locally a digest of data, config and code")
    code_version: str
    config_digest: str
    data_digest: str


class RoutingPlan(Contract):
    schema_version: str = ROUTING_SCHEMA_VERSION
    metadata: PlanMetadata
    candidates_path: str = Field(description="Path of routing_candidates.parquet, relative to the output dir")
    thresholds: dict[str, Any] = Field(description="Resolved thresholds per task/horizon tier, as applied")
    targets: dict[str, TargetRouting]

    @model_validator(mode="after")
    def _version(self) -> RoutingPlan:
        if self.schema_version != ROUTING_SCHEMA_VERSION:
            raise ValueError(f"routing plan schema {self.schema_version!r} is not {ROUTING_SCHEMA_VERSION!r}; rerun `trainpipe plan`")
        return self


class TrainingJob(Contract):
    job_id: str = Field(pattern=r"^[a-z0-9_.-]+$")
    target: str
    symbol: str | None
    route: Route
    training_type: TrainingType
    task: TaskType
    model_families: list[str]
    features: list[str] = Field(description="Ordered feature list the models of this job are trained on")
    priority: int = Field(ge=0)
    estimated_samples: int = Field(ge=0)
    reason: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class PlanSummary(Contract):
    total_jobs: int
    by_route: dict[str, int]
    by_type: dict[str, int]
    by_priority: dict[str, int]
    total_cs_jobs: int
    total_symbol_jobs: int
    total_blocked: int


class TrainingPlanMetadata(PlanMetadata):
    routing_plan_path: str = Field(description="Path of the routing_plan.json this plan was derived from, relative to the output dir")
    model_families: list[str]
    model_families_requested: list[str] | None
    holdout_cut: HoldoutCut | None = Field(None, description="The run's holdout cut (fixed before ranking); training scores every model on it")


class TrainingPlan(Contract):
    schema_version: str = PLAN_SCHEMA_VERSION
    metadata: TrainingPlanMetadata
    jobs: list[TrainingJob]
    summary: PlanSummary

    @model_validator(mode="after")
    def _consistent(self) -> TrainingPlan:
        if self.schema_version != PLAN_SCHEMA_VERSION:
            raise ValueError(f"training plan schema {self.schema_version!r} is not {PLAN_SCHEMA_VERSION!r}; rerun `trainpipe plan`")
        ids = [job.job_id for job in self.jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("training plan has duplicate job_id values")
        if self.summary.total_jobs != len(self.jobs):
            raise ValueError(f"summary.total_jobs={self.summary.total_jobs} but the plan lists {len(self.jobs)} jobs")
        return self


def plan_digest(plan: TrainingPlan) -> str:
    """sha256 of the plan without its generation timestamp: identical plans have identical digests.

    The plan Job reports it, the operator stamps it on every training Job, and a training pod refuses
    a plan on the volume whose digest differs (a newer run overwrote it, or the volume is not this run's).
    """
    wire = plan.to_wire()
    wire["metadata"] = {k: v for k, v in wire["metadata"].items() if k != "generatedAt"}
    return hashlib.sha256(json.dumps(wire, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
