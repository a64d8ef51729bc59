"""One place for every name the stages, the plan and the operator agree on; imported by both sides."""

from __future__ import annotations

from enum import StrEnum

API_GROUP = "trainpipe.io"
API_VERSION = "v1alpha1"
KIND = "TrainingPipeline"
PLURAL = "trainingpipelines"

PLAN_SCHEMA_VERSION = "trainpipe.io/plan/v1"
ROUTING_SCHEMA_VERSION = "trainpipe.io/routing/v1"


class Stage(StrEnum):
    """Pipeline stages in execution order; the order of this enum is the order they run."""

    RANK = "rank"
    SELECT = "select"
    PLAN = "plan"
    TRAIN_CPU = "train-cpu"
    TRAIN_GPU = "train-gpu"


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)


class TaskType(StrEnum):
    REGRESSION = "regression"
    BINARY = "binary"
    MULTICLASS = "multiclass"


class SideState(StrEnum):
    """Eligibility of one side (cross-sectional or one symbol) of a target for training."""

    STRONG = "STRONG"
    WEAK_BUT_OK = "WEAK_BUT_OK"
    EXPERIMENTAL = "EXPERIMENTAL"
    DISALLOWED = "DISALLOWED"


class Route(StrEnum):
    CROSS_SECTIONAL = "ROUTE_CROSS_SECTIONAL"
    SYMBOL_SPECIFIC = "ROUTE_SYMBOL_SPECIFIC"
    BOTH = "ROUTE_BOTH"
    EXPERIMENTAL_ONLY = "ROUTE_EXPERIMENTAL_ONLY"
    BLOCKED = "ROUTE_BLOCKED"


class TrainingType(StrEnum):
    CROSS_SECTIONAL = "cross_sectional"
    SYMBOL_SPECIFIC = "symbol_specific"
    BLOCKED = "blocked"


class Stability(StrEnum):
    STABLE = "STABLE"
    DRIFTING = "DRIFTING"
    DIVERGED = "DIVERGED"
    UNKNOWN = "UNKNOWN"


class Leakage(StrEnum):
    SAFE = "SAFE"
    SUSPECT = "SUSPECT"
    BLOCKED = "BLOCKED"
    UNKNOWN = "UNKNOWN"


class TargetStatus(StrEnum):
    """Outcome of ranking one target; only OK targets can be selected."""

    OK = "OK"
    LEAKAGE = "LEAKAGE"
    TOO_GOOD = "TOO_GOOD"
    DEGENERATE = "DEGENERATE"
    TOO_FEW_ROWS = "TOO_FEW_ROWS"


# Column-name conventions of the input data (FoxML compatible).
TIMESTAMP_COLUMN = "ts"
SYMBOL_COLUMN = "symbol"
REGRESSION_TARGET_PREFIX = "fwd_ret_"
CLASSIFICATION_TARGET_PREFIX = "y_"
TARGET_PREFIXES = (REGRESSION_TARGET_PREFIX, CLASSIFICATION_TARGET_PREFIX)
