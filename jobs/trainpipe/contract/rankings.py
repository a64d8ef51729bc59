"""What `trainpipe rank` writes and select, plan, the report and the rank command's exit report read: `ranking/target_rankings.json`.

Keys stay snake_case on disk (`SnakeContract`); the holdout cut inside keeps its camelCase. The one
writer and reader is `trainpipe.io.stage_files`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.cut import HoldoutCut
from trainpipe.contract.names import RANKINGS_SCHEMA_VERSION, TargetStatus, TaskType


class TargetRanking(SnakeContract):
    """One target's row of the ranking table, best first; scores are None where the task has none (or no fold scored)."""

    rank: int = Field(ge=1)
    target: str
    task: TaskType
    horizon_minutes: int | None
    metric_name: str = Field(description="ic for regression, auc for classification")
    score: float | None = Field(description="rank IC (regression) or AUC: the score ranking and routing judge")
    ic: float | None
    rank_ic: float | None
    r2: float | None
    auc: float | None
    lgbm_score: float | None
    linear_score: float | None
    consistency: float | None = Field(description="Share of walk-forward folds with positive skill")
    composite: float | None = Field(description="Mean skill × (0.5 + 0.5 × consistency): the order of the table")
    skill_se: float | None = Field(None, description="Standard error of the mean skill, from the out-of-sample predictions at their effective size "
                                   "(timestamps / horizon)")
    composite_low: float | None = Field(None, description="The composite's lower bound at the level `evidence.level` quotes: "
                                        "the target carries evidence of skill when it is above zero")
    evidence: bool = Field(False, description="The composite's lower bound clears zero after the correction for the targets tried")
    n_samples: int = Field(ge=0)
    n_folds: int = Field(ge=0)
    status: TargetStatus
    reason: str
    selected: bool = Field(description="Kept for selection: OK, with evidence of skill (or evidence.trainAnyway), and within targets.topN")


class EvidenceGate(SnakeContract):
    """How the targets were gated: Benjamini–Hochberg at `alpha` over the targets scored, bounds quoted at `level`."""

    alpha: float
    tried: int = Field(ge=0, description="Targets scored out of sample (OK or too good): the family corrected for")
    passed: int = Field(ge=0)
    level: float = Field(description="One-sided confidence of every composite_low")
    train_anyway: bool = Field(description="evidence.trainAnyway: the gates were reported, not applied; the best targets by point estimate were kept")


class FeatureLeak(SnakeContract):
    """A feature that tracks a label not yet known at its row; it left every target's pool."""

    feature: str
    target: str
    shift: int = Field(description="feature[t] matches target[t - shift]; shift < horizon means the label was not yet known at t")
    correlation: float
    method: str = Field(description="pearson/spearman against the label's level/sign")
    resolved: float = Field(0.0, description="The feature's |correlation| with the same label once resolved (shift ≥ horizon)")
    bound: float = Field(description="The |correlation| information known at t (its correlation with the resolved label, or the known "
                         "part's share), genuine skill and noise could reach at this shift")


class TooGoodLimits(SnakeContract):
    """The out-of-sample limits past which a score is a leak rather than skill; the report applies them to the holdout metrics too."""

    max_rank_ic: float
    max_r2: float
    max_auc: float


class RankingsFile(SnakeContract):
    SCHEMA_NAME: ClassVar[str] = "rankings"
    schema_version: str = RANKINGS_SCHEMA_VERSION
    interval_minutes: float = Field(gt=0)
    symbols: list[str]
    features: list[str] = Field(description="The pool select may use: leaking features have left it")
    candidate_features: list[str] = Field(description="Every feature ranking started from")
    leaks: list[FeatureLeak]
    suspects: list[str] = Field(default_factory=list, description="Top features of a target too good to be true that a rescan with a lower "
                                "floor found no leak in: still in the pool, reported for a person to check how they are built")
    selected: list[str] = Field(description="Targets kept for selection, in rank order: select unit i is selected[i]")
    holdout_cut: HoldoutCut
    too_good_limits: TooGoodLimits
    targets: list[TargetRanking]
    evidence: EvidenceGate | None = Field(None, description="The target gate; None only in files written without one")
    no_evidence: str | None = Field(None, description="Why nothing is kept when no target carries evidence of skill: the run trains nothing")

    @property
    def gates_off(self) -> bool:
        """evidence.trainAnyway: the gates were reported but did not decide (targets, features and routes by point estimates)."""
        return bool(self.selected) and self.evidence is not None and self.evidence.train_anyway

    @model_validator(mode="after")
    def _consistent(self) -> RankingsFile:
        ranked = {row.target: row for row in self.targets}
        unknown = [t for t in self.selected if t not in ranked or not ranked[t].selected]
        if unknown:
            raise ValueError(f"selected names {unknown}, which the ranking table does not mark selected")
        return self

    def target(self, name: str) -> TargetRanking:
        """The ranking row of `name`; KeyError when it was not ranked."""
        for row in self.targets:
            if row.target == name:
                return row
        raise KeyError(name)


class DataPins(SnakeContract):
    """`ranking/data_files.json`: the data files rank read and their digest (the holdout's bars included, so kept apart from the rankings)."""

    SCHEMA_NAME: ClassVar[str] = "data pins"
    schema_version: str = RANKINGS_SCHEMA_VERSION
    files: list[str]
    digest: str

