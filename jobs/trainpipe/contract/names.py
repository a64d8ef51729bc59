"""One place for every name the stages, the plan and the operator agree on; imported by both sides."""

from __future__ import annotations

from enum import StrEnum

API_GROUP = "trainpipe.io"
API_VERSION = "v1alpha1"
KIND = "TrainingPipeline"
PLURAL = "trainingpipelines"

PLAN_SCHEMA_VERSION = "trainpipe.io/plan/v2"
ROUTING_SCHEMA_VERSION = "trainpipe.io/routing/v2"
RANKINGS_SCHEMA_VERSION = "trainpipe.io/rankings/v3"
SELECTION_SCHEMA_VERSION = "trainpipe.io/selection/v2"
STAGE_RECORD_SCHEMA_VERSION = "trainpipe.io/stage-record/v1"
TRAINING_RESULT_SCHEMA_VERSION = "trainpipe.io/training-result/v1"


class Stage(StrEnum):
    """The built-in pipeline stages, in the order they run.

    One spelling everywhere: CLI, cache records, Job names, the `trainpipe.io/stage` label, status.
    """

    RANK = "rank"
    SELECT = "select"
    PLAN = "plan"
    CPU = "cpu"
    GPU = "gpu"
    REPORT = "report"


# What each stage is (fan-out, pool, command, report) and the order they run in is contract.stages.STAGES.

# Labels every Job and pod of a pipeline carries; the operator selects its children by them.
LABEL_PIPELINE = f"{API_GROUP}/pipeline"
LABEL_RUN = f"{API_GROUP}/run"
LABEL_STAGE = f"{API_GROUP}/stage"
LABEL_FAMILY = f"{API_GROUP}/family"
LABEL_ATTEMPT = f"{API_GROUP}/attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "trainpipe-operator"
# A family label value for stages that are not per family (Kubernetes label values cannot be empty and mean something).
NO_FAMILY = "all"

# Annotations a user sets on a pipeline: a new token starts a new run / resumes a Stalled run.
ANNOTATION_RERUN = f"{API_GROUP}/rerun"
ANNOTATION_RETRY = f"{API_GROUP}/retry"
# Run ids (comma-separated) whose folders keepRuns never removes.
ANNOTATION_PIN = f"{API_GROUP}/pin"
# Set by the operator on the Jobs it creates: the plan digest a training pod must find on the volume.
ANNOTATION_PLAN_DIGEST = f"{API_GROUP}/plan-digest"

# The container's CPU limit, set by the operator through the downward API; every thread pool of the jobs follows it.
CPUS_ENV = "TRAINPIPE_CPUS"

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_RESOURCE = "nvidia.com/gpu"


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
    UNKNOWN = "UNKNOWN"  # nothing measured: no earlier selection to compare with, and no resample made

    @property
    def label(self) -> str:
        """How users read it (reports, routing reasons, the CLI): UNKNOWN is a first run, not a state of the features."""
        return "first run" if self is Stability.UNKNOWN else self.value


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
