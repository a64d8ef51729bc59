"""The model-family catalogue (name → stage, backend, tasks, module, defaults) and the seed-compatible selectors.

Pure and import-light: the stage runner, the plan stage, the CLI and the operator read it without
loading any model library. Each family's implementation lives in `module` and is imported only when
that family is trained or loaded (`trainpipe.families.registry`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.families import FAMILY_NAMES, FAMILY_STAGE, FAMILY_TASKS
from trainpipe.contract.names import Stage, TaskType
from trainpipe.contract.stages import STAGES as STAGE_TABLE

StageName = Literal["cpu", "gpu"]
Backend = Literal["none", "tf", "torch"]
ThreadKind = Literal["openmp", "blas", "python", "tf", "torch"]

# The training stages' spellings, from the contract (the same strings as Stage.CPU / Stage.GPU).
STAGES: tuple[StageName, ...] = tuple(cast(StageName, stage) for stage in STAGE_TABLE.training)

# Params every neural family shares; tests pass tiny values.
_NN_COMMON: dict[str, Any] = {
    "epochs": 8,
    "batch_size": 256,
    "learning_rate": 1e-3,
    "patience": 3,
    "dropout": 0.1,
    "validation_fraction": 0.15,
    "full_budget_on_cpu": False,  # True trains with these values on a CPU too (else trainpipe.families.budget caps them)
}


@dataclass(frozen=True)
class FamilySpec:
    """One row of the catalogue."""

    name: str
    stage: StageName
    backend: Backend
    module: str  # import path of the module holding the trainer class
    cls: str  # trainer class name inside `module`
    what: str  # one line: what the family really is
    tasks: frozenset[TaskType]
    threads: ThreadKind = "python"
    sequence: bool = False  # needs ts/symbol history at predict time
    aliases: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


def _f(name: str, backend: Backend, module: str, cls: str, what: str, **kw: Any) -> FamilySpec:
    # Stage and tasks come from the shared contract table, which the operator reads too.
    stage: StageName = "cpu" if FAMILY_STAGE[name] is Stage.CPU else "gpu"
    return FamilySpec(name=name, stage=stage, backend=backend, module=f"trainpipe.families.{module}", cls=cls, what=what,
                      tasks=FAMILY_TASKS[name], **kw)


# Order matters: it is the CPU → GPU training order and the order `resolve_families` returns.
CATALOGUE: tuple[FamilySpec, ...] = (
    _f("lightgbm", "none", "gbdt", "LightGBMTrainer", "LightGBM GBDT (regression L2 / binary logloss), early stopping on a time-ordered tail",
       threads="openmp", aliases=("LightGBM",),
       defaults={"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 31, "max_depth": -1, "min_child_samples": 50,
                 "subsample": 0.8, "colsample_bytree": 0.8, "reg_alpha": 0.1, "reg_lambda": 0.1, "early_stopping_rounds": 30,
                 "validation_fraction": 0.15}),
    _f("quantile_lightgbm", "none", "gbdt", "QuantileLightGBMTrainer", "One LightGBM per quantile (pinball loss); the median is the point forecast",
       threads="openmp", aliases=("QuantileLightGBM",),
       defaults={"quantiles": [0.1, 0.5, 0.9], "n_estimators": 200, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 50,
                 "subsample": 0.8, "colsample_bytree": 0.8, "early_stopping_rounds": 30, "validation_fraction": 0.15}),
    _f("xgboost", "none", "gbdt", "XGBoostTrainer", "XGBoost hist trees (squared error / logistic), early stopping on a time-ordered tail",
       threads="openmp", aliases=("XGBoost",),
       defaults={"n_estimators": 300, "learning_rate": 0.05, "max_depth": 5, "min_child_weight": 5.0, "subsample": 0.8,
                 "colsample_bytree": 0.8, "reg_alpha": 0.1, "reg_lambda": 1.0, "early_stopping_rounds": 30, "validation_fraction": 0.15}),
    _f("catboost", "none", "gbdt", "CatBoostTrainer", "CatBoost oblivious trees (RMSE / Logloss), early stopping on a time-ordered tail",
       threads="openmp", aliases=("CatBoost",),
       defaults={"n_estimators": 300, "learning_rate": 0.05, "depth": 6, "l2_leaf_reg": 3.0, "early_stopping_rounds": 30,
                 "validation_fraction": 0.15}),
    _f("reward_based", "none", "linear", "RewardBasedTrainer",
       "Linear position tanh(Xw) trained to maximise the Sharpe ratio of position × realised target (L-BFGS)",
       threads="blas", aliases=("RewardBased",),
       defaults={"l2": 1e-3, "max_iter": 200}),
    _f("ngboost", "none", "probabilistic", "NGBoostTrainer", "NGBoost natural-gradient boosting of a Normal (Bernoulli for binary) distribution",
       threads="blas", aliases=("NGBoost",),
       defaults={"n_estimators": 200, "learning_rate": 0.03, "max_depth": 3, "minibatch_frac": 1.0, "early_stopping_rounds": 20,
                 "validation_fraction": 0.15}),
    _f("gmm_regime", "none", "regime", "GMMRegimeTrainer",
       "PCA + Gaussian mixture regimes; one ridge/logistic model per regime fitted with soft weights, blended by posterior",
       threads="blas", aliases=("GMMRegime",),
       defaults={"n_regimes": 3, "n_components": 5, "covariance_type": "diag", "alpha": 1.0, "max_iter": 100}),
    _f("change_point", "none", "regime", "ChangePointTrainer",
       "ruptures Binseg change points on the per-timestamp target mean/volatility; one model per segment, the latest predicts",
       threads="blas", aliases=("ChangePoint",),
       defaults={"penalty": 3.0, "min_segment_fraction": 0.15, "max_breakpoints": 5, "alpha": 1.0}),
    _f("ftrl_proximal", "none", "linear", "FTRLProximalTrainer",
       "FTRL-Proximal online learner (McMahan et al. 2013 per-coordinate update, numpy), rows in time order",
       threads="python", aliases=("FTRLProximal", "FTRL"),
       defaults={"alpha": 0.05, "beta": 1.0, "l1": 1.0, "l2": 1.0, "epochs": 1}),
    _f("ensemble", "none", "stacking", "EnsembleTrainer",
       "Stacking: ridge over the time-ordered walk-forward OOF predictions of other CPU families",
       threads="openmp", aliases=("Ensemble", "Stacking"),
       defaults={"base_families": ["lightgbm", "ftrl_proximal", "reward_based"], "n_folds": 3, "alpha": 1.0, "base_params": {}}),
    _f("meta_learning", "none", "stacking", "MetaLearningTrainer",
       "Meta-model weighting families by their recent out-of-sample IC (softmax over the latest OOF window)",
       threads="openmp", aliases=("MetaLearning",),
       defaults={"base_families": ["lightgbm", "ftrl_proximal", "reward_based"], "n_folds": 3, "recent_fraction": 0.5,
                 "temperature": 0.02, "base_params": {}}),
    _f("mlp", "tf", "tf_models", "MLPTrainer", "Keras dense network (hidden layers, dropout), time-ordered early stopping",
       threads="tf", aliases=("MLP",), defaults={**_NN_COMMON, "hidden": [64, 32]}),
    _f("vae", "tf", "tf_models", "VAETrainer", "Variational autoencoder of the features; regression/logit head on the latent mean",
       threads="tf", aliases=("VAE",), defaults={**_NN_COMMON, "hidden": 64, "latent": 8, "beta": 0.1, "head_weight": 1.0}),
    _f("gan", "tf", "tf_models", "GANTrainer",
       "Conditional GAN: generator G(x, z) of the target distribution vs discriminator D(x, y); point forecast = mean over a fixed noise bank",
       threads="tf", aliases=("GAN",), defaults={**_NN_COMMON, "hidden": 64, "noise_dim": 4, "n_samples": 16, "supervised_weight": 1.0}),
    _f("multi_task", "tf", "tf_models", "MultiTaskTrainer",
       "Shared trunk with one head per target (the job's target + auxiliary plan targets), masked joint loss",
       threads="tf", aliases=("MultiTask",), defaults={**_NN_COMMON, "hidden": [64, 32], "aux_weight": 0.5}),
    _f("cnn1d", "torch", "torch_models", "CNN1DTrainer", "1-D convolutions over time windows (N, lookback, F) of past rows per symbol",
       threads="torch", sequence=True, aliases=("CNN1D",), defaults={**_NN_COMMON, "lookback": 20, "channels": 32, "kernel_size": 3}),
    _f("lstm", "torch", "torch_models", "LSTMTrainer", "LSTM over time windows (N, lookback, F) of past rows per symbol",
       threads="torch", sequence=True, aliases=("LSTM",), defaults={**_NN_COMMON, "lookback": 20, "hidden": 32, "num_layers": 1}),
    _f("transformer", "torch", "torch_models", "TransformerTrainer",
       "Transformer encoder (causal mask, learned positions) over time windows of past rows per symbol",
       threads="torch", sequence=True, aliases=("Transformer",),
       defaults={**_NN_COMMON, "lookback": 20, "d_model": 32, "n_heads": 4, "num_layers": 1}),
    _f("tab_cnn", "torch", "torch_models", "TabCNNTrainer", "1-D convolutions over the features of one row as tokens (value × per-column embedding)",
       threads="torch", aliases=("TabCNN",), defaults={**_NN_COMMON, "d_token": 8, "channels": 32, "kernel_size": 3}),
    _f("tab_lstm", "torch", "torch_models", "TabLSTMTrainer", "LSTM over the features of one row as tokens (value × per-column embedding)",
       threads="torch", aliases=("TabLSTM",), defaults={**_NN_COMMON, "d_token": 8, "hidden": 32}),
    _f("tab_transformer", "torch", "torch_models", "TabTransformerTrainer",
       "TabTransformer (Huang et al. 2020): quantile-binned columns → column embeddings → transformer encoder, + normed continuous path → MLP",
       threads="torch", aliases=("TabTransformer",), defaults={**_NN_COMMON, "n_bins": 16, "d_model": 16, "n_heads": 2, "num_layers": 1}),
)

if tuple(spec.name for spec in CATALOGUE) != FAMILY_NAMES:
    raise RuntimeError("the catalogue and trainpipe.contract.families list different families or orders")

FAMILIES: Mapping[str, FamilySpec] = MappingProxyType({spec.name: spec for spec in CATALOGUE})
ALL_FAMILIES: tuple[str, ...] = tuple(spec.name for spec in CATALOGUE)
CPU_FAMILIES: tuple[str, ...] = tuple(s.name for s in CATALOGUE if s.stage == "cpu")
GPU_FAMILIES: tuple[str, ...] = tuple(s.name for s in CATALOGUE if s.stage == "gpu")

_ALIASES: Mapping[str, str] = MappingProxyType(
    {key: spec.name for spec in CATALOGUE for key in {spec.name, *(_k.lower() for _k in spec.aliases), spec.name.replace("_", "")}}
)


class UnknownFamilyError(ValueError, CommandFailure):
    """A family name that is not in the catalogue; the message lists the valid names."""

    exit_code = ExitCode.INVALID_SPEC


def normalise_family(name: str) -> str:
    """Catalogue name for `name`: snake_case, TitleCase seed names and separator-free spellings are accepted."""
    key = name.strip().lower().replace("-", "_")
    found = _ALIASES.get(key) or _ALIASES.get(key.replace("_", ""))
    if found is None:
        raise UnknownFamilyError(f"unknown model family {name!r}; valid families: {', '.join(ALL_FAMILIES)}")
    return found


def spec_of(name: str) -> FamilySpec:
    return FAMILIES[normalise_family(name)]


def stage_of(name: str) -> StageName:
    """Which training stage runs the family: 'cpu' (no GPU, no TF/Torch) or 'gpu'."""
    return spec_of(name).stage


def resolve_families(families: Sequence[str] | None, model_types: str | None) -> list[str]:
    """Seed-compatible family selection, always returned in catalogue (CPU → GPU) order.

    `model_types` 'sequential' or 'all' (the seed redefined 'sequential' as "every family, CPU first")
    selects all 21; 'cpu'/'gpu' one stage; 'cross_sectional' the non-sequence families; None means
    "whatever `families` lists". `families` then filters that set (names normalised to snake_case).
    """
    if model_types is None:
        base = set(ALL_FAMILIES) if families is None else None
    else:
        kind = model_types.strip().lower()
        if kind in ("sequential", "all"):
            base = set(ALL_FAMILIES)
        elif kind in STAGES:
            base = {s.name for s in CATALOGUE if s.stage == kind}
        elif kind == "cross_sectional":
            base = {s.name for s in CATALOGUE if not s.sequence}
        else:
            raise ValueError(f"unknown model_types {model_types!r}; use one of all, sequential, cross_sectional, cpu, gpu")
    chosen = {normalise_family(name) for name in families} if families is not None else set(ALL_FAMILIES)
    if base is not None:
        chosen &= base
    return [name for name in ALL_FAMILIES if name in chosen]


def supports(name: str, task: TaskType | str) -> bool:
    return TaskType(task) in spec_of(name).tasks
