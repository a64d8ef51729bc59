"""Versioned schemas of what `plan` writes and `train` (and the operator) read: routing plan and training plan.

The files are written with snake_case keys (`to_snake`): plan readers written before trainpipe look up
`metadata.run_id`, `jobs[].job_id`, `summary.by_route`, … and must read them unchanged. Those readers also
look up a few keys that restate what the models already hold (`metadata.git_commit`, `config_hash`,
`total_jobs`, `model_families_normalized`, `metrics_snapshot`, `cross_sectional.route`): they are derived on
write and dropped on read, so each fact keeps one source. `plan_digest` hashes the model, not the file.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    computed_field,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

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


class _Derived(Contract):
    """A plan model whose computed fields restate its own fields for plan readers: written, never read back."""

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        derived = {key for name in cls.model_computed_fields for key in (name, to_camel(name))}
        return {k: v for k, v in data.items() if k not in derived}


def _drop_metadata_key(data: Any, name: str) -> Any:
    """`data` without metadata[name] in either spelling: a key the plan adds on write and recomputes on read."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return data
    metadata = {k: v for k, v in data["metadata"].items() if k not in (name, to_camel(name))}
    return {**data, "metadata": metadata}


def _with_metadata_key(data: dict, info: SerializationInfo, name: str, value: Any) -> dict:
    return {**data, "metadata": {**data["metadata"], to_camel(name) if info.by_alias else name: value}}


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
    ir: float | None = Field(None, description="Cross-sectional row: information ratio of the per-timestamp scores, mean over folds")
    score_se: float | None = Field(None, description="Standard error of `score`, each fold counted at its effective size (timestamps or rows / horizon)")
    effective_n: float | None = Field(None, description="Independent periods behind `score`: the degrees of freedom of its interval, plus one")


class CrossSectionalDecision(_Derived):
    enabled: bool
    state: SideState
    score: float | None
    ir: float | None = Field(None, description="Information ratio of the per-timestamp scores behind `score` (mean over folds)")
    score_low: float | None = Field(None, description="The lower bound routing judged (its level is in thresholds.evidence); None when not gated")
    sample_size: int
    metric_name: str
    reason: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def route(self) -> Literal["ENABLED", "DISABLED"]:
        """`enabled` as plan readers spell it."""
        return "ENABLED" if self.enabled else "DISABLED"


class SymbolDecision(Contract):
    route: Route
    cs_state: SideState
    local_state: SideState
    score: float | None
    score_low: float | None = Field(None, description="The symbol side's lower bound routing judged; None when not gated or without a score")
    sample_size: int
    # A list under a singular name, as plan readers expect; files written before that spelled it `reasons`.
    reason: list[str] = Field(validation_alias=AliasChoices("reason", "reasons"), description="Why this route, conclusion first")


class TargetRouting(Contract):
    task: TaskType
    horizon_minutes: int | None
    cross_sectional: CrossSectionalDecision
    symbols: dict[str, SymbolDecision]


class PlanMetadata(_Derived):
    generated_at: str = Field(description="ISO-8601 UTC; the only field that differs between identical runs")
    run_id: str = Field(description="The operator's run id (--run-id) in a cluster; locally a digest of data, config and code")
    code_version: str
    config_digest: str
    data_digest: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def git_commit(self) -> str:
        """The code identity under the name plan readers look up: a pod has no git checkout, so the package
        version plus a digest of its sources (`code_version`) stands in for the commit."""
        return self.code_version

    @computed_field  # type: ignore[prop-decorator]
    @property
    def config_hash(self) -> str:
        """`config_digest` under the name plan readers look up."""
        return self.config_digest


class RoutingPlan(Contract):
    SCHEMA_NAME: ClassVar[str] = "routing plan"
    SCHEMA_FIX: ClassVar[str] = "rerun `trainpipe plan`"
    schema_version: str = ROUTING_SCHEMA_VERSION
    metadata: PlanMetadata
    candidates_path: str = Field(description="Path of routing_candidates.parquet, relative to the output dir")
    thresholds: dict[str, Any] = Field(description="Resolved thresholds per task/horizon tier, as applied")
    targets: dict[str, TargetRouting]

    @model_validator(mode="before")
    @classmethod
    def _drop_metrics_snapshot(cls, data: Any) -> Any:
        return _drop_metadata_key(data, "metrics_snapshot")

    @model_serializer(mode="wrap")
    def _add_metrics_snapshot(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict:
        # Plan readers find the candidates file under metadata.metrics_snapshot.
        return _with_metadata_key(handler(self), info, "metrics_snapshot", self.candidates_path)



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
    metrics_snapshot: str | None = Field(None, description="Path of the routing_candidates.parquet the routing plan was decided from, relative to the output dir")
    model_families: list[str]
    model_families_requested: list[str] | None
    holdout_cut: HoldoutCut | None = Field(None, description="The run's holdout cut (fixed before ranking); training scores every model on it")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def model_families_normalized(self) -> list[str]:
        """`model_families` (already normalised) under the second name plan readers fall back to."""
        return list(self.model_families)


class TrainingPlan(Contract):
    SCHEMA_NAME: ClassVar[str] = "training plan"
    SCHEMA_FIX: ClassVar[str] = "rerun `trainpipe plan`"
    schema_version: str = PLAN_SCHEMA_VERSION
    metadata: TrainingPlanMetadata
    jobs: list[TrainingJob]
    summary: PlanSummary

    @model_validator(mode="before")
    @classmethod
    def _drop_total_jobs(cls, data: Any) -> Any:
        # Recomputed from the jobs; summary.total_jobs is the stored count checked against them.
        return _drop_metadata_key(data, "total_jobs")

    @model_serializer(mode="wrap")
    def _add_total_jobs(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict:
        # Plan readers check metadata.total_jobs before they look at the jobs.
        return _with_metadata_key(handler(self), info, "total_jobs", len(self.jobs))

    @model_validator(mode="after")
    def _consistent(self) -> TrainingPlan:
        ids = [job.job_id for job in self.jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("training plan has duplicate job_id values")
        if self.summary.total_jobs != len(self.jobs):
            raise ValueError(f"summary.total_jobs={self.summary.total_jobs} but the plan lists {len(self.jobs)} jobs")
        return self


def plan_digest(plan: TrainingPlan) -> str:
    """sha256 of the plan's content without its generation timestamp: identical plans have identical digests.

    The plan Job reports it, the operator stamps it on every training Job, and a training pod refuses
    a plan on the volume whose digest differs (a newer run overwrote it, or the volume is not this run's).
    It hashes the model in one fixed spelling (field names, sorted keys), never the bytes of a file, so a
    plan read from its snake_case file, from camelCase JSON or rebuilt in memory gives the same digest.
    """
    content = plan.model_dump(mode="json", by_alias=False, exclude={"metadata": {"generated_at"}})
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
