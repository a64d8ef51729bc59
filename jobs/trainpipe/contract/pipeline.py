"""The `TrainingPipeline` spec: the typed model behind `trainpipe run -f` and the CRD (generated from it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from trainpipe.contract import sizes
from trainpipe.contract.base import Contract
from trainpipe.contract.cluster import ArtifactsSpec, ImagesSpec, ScheduleSpec, StagesSpec, VolumeSpec
from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.status import PipelineStatus
from trainpipe.contract.storage import ObjectUri, StorageSpec
from trainpipe.contract.tracking import TrackingSpec

SelectionMethod = Literal["lightgbm_gain", "xgboost_gain", "catboost", "permutation", "mutual_info"]
ALL_SELECTION_METHODS: tuple[SelectionMethod, ...] = (
    "lightgbm_gain",
    "xgboost_gain",
    "catboost",
    "permutation",
    "mutual_info",
)
BothStrongBehavior = Literal["ROUTE_BOTH", "PREFER_CS", "PREFER_SYMBOL"]
ModelTypes = Literal["all", "sequential", "cross_sectional", "cpu", "gpu"]

# Any name a data provider uses (^VIX, ES=F, EURUSD=X, BRK-B) is a symbol; only what would be unsafe in
# the symbol=<SYM>/<SYM>.parquet path is refused: separators, whitespace, control characters, and '..'
# (refused by the DataSpec validator and, in the cluster, its CEL rule: the CRD's regex has no lookahead).
# Where a job id (and so a Kubernetes name) needs a symbol, `trainpipe.contract.units.symbol_key` maps it injectively.
Symbol = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^/\\\s\x00-\x1f\x7f]+$")]


class DataSpec(Contract):
    """Where the bars live and which part of them to read."""

    model_config = Contract.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [{"rule": "!has(self.symbols) || self.symbols.all(s, !s.contains('..'))",
                                                             "message": "data.symbols: a symbol may not contain '..' (it names a folder)"}]}
    }

    dir: sizes.Path = Field("data", description="Data directory: <dir>/[interval=<I>/]symbol=<SYM>/<SYM>.parquet, or one long-format parquet/CSV file with a symbol column. "
                     "In a cluster run, a relative dir is taken inside data.volume.mountPath.")
    uri: ObjectUri | None = Field(None, description="Object-store location of the bars (s3://bucket/prefix, same layouts as dir); when set, dir and volume are not used.")
    volume: VolumeSpec | None = Field(None, description="Cluster runs: the claim the Jobs read the bars from.")
    symbols: list[Symbol] = Field(default_factory=list, max_length=sizes.SYMBOLS, description="Symbols to load; empty means every symbol found.")
    interval: str | None = Field(None, max_length=16, pattern=r"^[0-9]+[mhd]$", description="Interval partition to read (e.g. 5m, 1d) when the directory has interval=<I> folders.")
    max_rows_per_symbol: int | None = Field(None, ge=100, description="Keep only the most recent N rows of each symbol.")
    # One budget for every stage, not one per stage: rank fixes the run's holdout cut on the rows it reads, and select and
    # training must read exactly those rows (the cut pins them), so the rows a run reads are a property of its data.
    row_budget: int = Field(2_000_000, ge=10_000, le=10**10, description="Most rows (bars of all symbols) any stage loads. A larger panel is cut to whole "
                            "timestamp blocks spread across its history (the newest always kept), placed by seed and read through the parquet "
                            "row-group statistics, so each pod's memory follows this number, not the panel; the rankings record the blocks.")
    sample_blocks: int = Field(8, ge=1, le=1_000, description="How many timestamp blocks a panel over rowBudget is cut to (fewer, longer blocks "
                               "keep longer unbroken histories for sequence models; more spread them over more market regimes).")
    min_rows_per_symbol: int = Field(200, ge=20, description="A symbol with fewer bars before the holdout cut is warned about by name (its scores rest on "
                                     "few bars); the run goes on.")

    @field_validator("symbols")
    @classmethod
    def _path_safe(cls, value: list[str]) -> list[str]:
        unsafe = [s for s in value if ".." in s]
        if unsafe:
            raise ValueError(f"symbols {unsafe} contain '..', which would name a folder outside the data dir; rename them")
        return value


class TargetsSpec(Contract):
    model_config = Contract.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [{"rule": "self.auto || (has(self.include) && size(self.include) > 0)", "message": "targets.include must name targets when targets.auto is false"}]}
    }
    auto: bool = Field(True, description="Discover every fwd_ret_*/y_* column and rank them.")
    include: list[sizes.Column] = Field(default_factory=list, max_length=sizes.TARGETS, description="Targets to consider; with auto=false exactly these are ranked.")
    top_n: int = Field(5, ge=1, le=200, description="How many ranked targets go on to feature selection.")
    horizon_bars: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, max_length=sizes.TARGETS,
        description="Horizon in bars per target column, for names that do not end in <n>[m|h|d|w|mo] or to state it exactly; it sets the purge and the leak scan.",
    )

    @model_validator(mode="after")
    def _explicit_needs_names(self) -> TargetsSpec:
        if not self.auto and not self.include:
            raise ValueError("targets.auto is false but targets.include is empty: name the targets to train, or set auto: true")
        return self


class FeaturesSpec(Contract):
    model_config = Contract.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [{"rule": "self.auto || (has(self.include) && size(self.include) > 0)", "message": "features.include must list features when features.auto is false"}]}
    }
    auto: bool = Field(True, description="Select features by consensus of several importance methods.")
    include: list[sizes.Column] = Field(default_factory=list, max_length=sizes.FEATURES, description="Candidate features; with auto=false exactly these are used, in this order.")
    exclude: list[sizes.Column] = Field(default_factory=list, max_length=sizes.FEATURES, description="Features never used.")
    top_m: int = Field(50, ge=1, le=2000, description="How many features each target keeps.")

    @model_validator(mode="after")
    def _explicit_needs_names(self) -> FeaturesSpec:
        if not self.auto and not self.include:
            raise ValueError("features.auto is false but features.include is empty: list the features, or set auto: true")
        return self


class RankingSpec(Contract):
    folds: int = Field(4, ge=2, le=20, description="Walk-forward test folds.")
    embargo_bars: int = Field(5, ge=0, le=10_000, description="Extra bars purged beyond the target horizon between train and test.")
    max_rows: int = Field(200_000, ge=1_000, description="Rows sampled (most recent first kept in time order) for ranking and selection.")
    leak_correlation: float = Field(0.1, gt=0, le=1, description="The skill a genuine predictor may show on a label not yet known at its row: a feature is a leak when its "
                                    "|correlation| (Pearson or Spearman, with the level or sign) with such a label exceeds its correlation with the resolved labels "
                                    "(or what the label's known part explains) by this much plus what noise allows for the rows and horizon; "
                                    "real returns' ICs stay under about 0.1. A too-good target's top features are rescanned with a lower allowance.")
    max_rank_ic: float = Field(0.15, gt=0, le=1, description="The best model's out-of-sample |rank IC| above this is too good to be true for returns (real ones stay under about 0.1).")
    max_r2: float = Field(0.05, gt=0, le=1, description="The best model's out-of-sample R² above this is too good to be true for returns.")
    min_symbols_per_timestamp: int = Field(3, ge=2, le=10_000, description="A cross-sectional score needs this many symbols on most timestamps; "
                                           "a panel without such a cross-section (symbols on different calendars) gets symbol routes only.")
    max_auc: float = Field(0.65, gt=0.5, le=1, description="The best model's out-of-sample AUC (or 1 − AUC) above this is too good to be true for market labels.")


class SelectionSpec(Contract):
    methods: list[SelectionMethod] = Field(default_factory=lambda: list(ALL_SELECTION_METHODS), min_length=4, max_length=len(ALL_SELECTION_METHODS), description="Importance methods in the consensus (at least four).")
    min_support: int = Field(2, ge=1, le=5, description="A feature needs a positive score from at least this many methods.")

    @field_validator("methods")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("selection.methods lists a method twice")
        return value


class RoutingSpec(Contract):
    min_sample_size_cs: int = Field(1_000, ge=1, description="Fewest out-of-sample rows for a cross-sectional route.")
    min_sample_size_symbol: int = Field(250, ge=1, description="Fewest out-of-sample rows for a symbol-specific route.")
    both_strong_behavior: BothStrongBehavior = "ROUTE_BOTH"
    enable_experimental_lane: bool = True
    max_fraction_symbols_per_target: float = Field(0.5, gt=0, le=1, description="Experimental symbol routes per target, as a fraction of its symbols.")
    block_on_leakage: bool = Field(True, description="A leaking feature stops the run at rank (true), or leaves every target's feature pool with the reason recorded (false).")


class EvidenceSpec(Contract):
    alpha: float = Field(0.05, gt=0, le=0.5, description="False-discovery rate of the evidence gates: a target is kept only when its composite's lower bound "
                         "clears zero, and a routing side is usable only when its score's lower bound clears the side's threshold, both corrected "
                         "(Benjamini–Hochberg) for the number of targets or sides tried.")
    train_anyway: bool = Field(False, description="Report the gates but do not apply them: keep the best targets by their point estimates, select "
                               "top features without the shuffled-target baseline, route on point estimates (a diverged selection may train in the "
                               "experimental lane). For panels too small to show evidence; the report says so on its first line.")


DEFAULT_FAMILIES = ("lightgbm", "xgboost", "catboost")


class TrainingSpec(Contract):
    families: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=sizes.FAMILIES, description="Model families to train (snake_case names); empty = the modelTypes set, or lightgbm, xgboost, catboost.")
    model_types: ModelTypes | None = Field(None, description="Seed-compatible selector: sequential/all = every family in CPU→GPU order; families then filters it.")
    holdout_fraction: float = Field(0.2, gt=0.05, lt=0.6, description="Most recent share of the panel's timestamps held out for honest metrics: one holdout start for every symbol, development purged before it.")
    allow_empty_plan: bool = Field(False, description="Treat a plan with zero jobs as success instead of an error.")
    cost_bps: float = Field(5.0, ge=0, le=1_000, description="Trading cost of the holdout backtests in basis points of the value traded: "
                            "each rebalance pays costBps / 10,000 × Σ|change in weight| (a full flip of the long/short book trades 2). "
                            "5 suits liquid large caps and futures; raise it for small caps, retail FX or crypto, 0 shows gross figures.")
    full_budget_on_cpu: bool = Field(False, description="Train the GPU families with their full budget (epochs, patience, batch size, lookback) where no GPU is visible too; by default a CPU gets the smaller CPU budget, recorded in each model's metrics.json.")


class PipelineSpec(Contract):
    """Everything a run needs; the same object in the CR's spec and in `trainpipe run -f`."""

    data: DataSpec = Field(default_factory=DataSpec)
    targets: TargetsSpec = Field(default_factory=TargetsSpec)
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    ranking: RankingSpec = Field(default_factory=RankingSpec)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evidence: EvidenceSpec = Field(default_factory=EvidenceSpec)
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed for every sampler and model.")
    tracking: TrackingSpec | None = Field(None, description="Log each run, its models and its report to MLflow and register the best model per target; none = not tracked.")
    # ---- cluster runs only (the operator reads these; `trainpipe run` ignores them)
    artifacts: ArtifactsSpec = Field(default_factory=ArtifactsSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec, description="How the Jobs reach the object store of data.uri and artifacts.uri.")
    images: ImagesSpec = Field(default_factory=ImagesSpec)
    stages: StagesSpec = Field(default_factory=StagesSpec)
    suspend: bool = Field(False, description="Stop creating Jobs and suspend running ones; false again continues the same run.")
    ttl_seconds_after_finished: int | None = Field(None, ge=0, description="Delete a finished run's Jobs and pods this long after it finished (outputs stay).")
    active_deadline_seconds: int | None = Field(None, ge=1, description="Bound on a whole run: past it the run is stopped and the pipeline Stalled.")
    service_account_name: sizes.Name | None = Field(None, description="ServiceAccount of the Jobs' pods (they get no API token either way).")
    priority_class_name: sizes.Name | None = Field(None, description="PriorityClass of the Jobs' pods.")
    queue_name: str | None = Field(None, max_length=63, description="Kueue LocalQueue: Jobs are created suspended with the kueue.x-k8s.io/queue-name label and Kueue admits them.")
    schedule: ScheduleSpec | None = Field(None, description="Start a new run at each fire time of this cron schedule, even with an unchanged spec; changing it never starts a run by itself.")
    keep_runs: int = Field(10, ge=1, le=1000, description="Successful run folders on the artifacts volume and run records in status kept per pipeline; older ones are removed after a successful run (failed runs never count; lastSucceededRun and runs in the trainpipe.io/pin annotation stay).")


class ObjectMeta(Contract):
    model_config = Contract.model_config | {"extra": "allow"}
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    namespace: str | None = None


class TrainingPipeline(Contract):
    # Literal values must equal trainpipe.contract.names (API_GROUP/API_VERSION, KIND); test_crd checks it.
    api_version: Literal["trainpipe.io/v1alpha1"] = "trainpipe.io/v1alpha1"
    kind: Literal["TrainingPipeline"] = "TrainingPipeline"
    metadata: ObjectMeta
    spec: PipelineSpec = Field(default_factory=PipelineSpec)
    status: PipelineStatus | None = None


class ManifestError(ValueError, CommandFailure):
    """A pipeline file that cannot be used; the message names the file and the field."""

    exit_code = ExitCode.INVALID_SPEC


def load_manifest(path: Path) -> TrainingPipeline:
    """Read a `TrainingPipeline` manifest (YAML or JSON); errors name the file and the offending field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file; pass the path of a TrainingPipeline manifest") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a TrainingPipeline mapping with apiVersion, kind, metadata, spec")
    try:
        return TrainingPipeline.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(f"{path}: {format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the dotted field path the user wrote."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"field '{where}': {err['msg']}")
    return "; ".join(lines)
