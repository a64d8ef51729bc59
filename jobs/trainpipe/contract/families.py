"""Which training stage runs each model family and which tasks it supports: the facts operator and jobs share.

The catalogue (`trainpipe.families.catalogue`) adds how each family is built; the operator reads only
this table, so it never imports a model library to know that `lstm` needs a GPU node.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from trainpipe.contract.names import Stage, TaskType

_REG_BIN = frozenset({TaskType.REGRESSION, TaskType.BINARY})
_REG = frozenset({TaskType.REGRESSION})

# Order matters: it is the CPU → GPU training order, and within a stage the order units are listed in.
_TABLE: tuple[tuple[str, Stage, frozenset[TaskType]], ...] = (
    ("lightgbm", Stage.CPU, _REG_BIN),
    ("quantile_lightgbm", Stage.CPU, _REG),
    ("xgboost", Stage.CPU, _REG_BIN),
    ("catboost", Stage.CPU, _REG_BIN),
    ("reward_based", Stage.CPU, _REG_BIN),
    ("ngboost", Stage.CPU, _REG_BIN),
    ("gmm_regime", Stage.CPU, _REG_BIN),
    ("change_point", Stage.CPU, _REG_BIN),
    ("ftrl_proximal", Stage.CPU, _REG_BIN),
    ("ensemble", Stage.CPU, _REG_BIN),
    ("meta_learning", Stage.CPU, _REG_BIN),
    ("mlp", Stage.GPU, _REG_BIN),
    ("vae", Stage.GPU, _REG_BIN),
    ("gan", Stage.GPU, _REG_BIN),
    ("multi_task", Stage.GPU, _REG_BIN),
    ("cnn1d", Stage.GPU, _REG_BIN),
    ("lstm", Stage.GPU, _REG_BIN),
    ("transformer", Stage.GPU, _REG_BIN),
    ("tab_cnn", Stage.GPU, _REG_BIN),
    ("tab_lstm", Stage.GPU, _REG_BIN),
    ("tab_transformer", Stage.GPU, _REG_BIN),
)

FAMILY_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _TABLE)
FAMILY_STAGE: Mapping[str, Stage] = MappingProxyType({name: stage for name, stage, _ in _TABLE})
FAMILY_TASKS: Mapping[str, frozenset[TaskType]] = MappingProxyType({name: tasks for name, _, tasks in _TABLE})
