"""Family name → trainer class, and `load_model(model_dir)`; used by the stage worker, tests and inference code.

Importing this module loads no model library: each family's module (and its framework) is imported
only when that family is built or loaded.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainpipe.contract.names import TaskType
from trainpipe.families.base import META_FILE, Trainer
from trainpipe.families.catalogue import FAMILIES, normalise_family


def trainer_class(family: str) -> type[Trainer]:
    """The trainer class of `family` (imports its module, hence its framework)."""
    spec = FAMILIES[normalise_family(family)]
    module = importlib.import_module(spec.module)
    return getattr(module, spec.cls)


def make_trainer(
    family: str,
    *,
    features: Sequence[str],
    target: str,
    task: TaskType | str,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    horizon_bars: int = 1,
    aux_targets: Sequence[str] = (),
) -> Trainer:
    """An unfitted trainer; parameters are checked here, so a bad one fails before any data is read."""
    cls = trainer_class(family)
    return cls(features=features, target=target, task=task, params=params, seed=seed, horizon_bars=horizon_bars, aux_targets=aux_targets)


def read_meta(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{model_dir}: no {META_FILE}; this is not a saved trainpipe model (train it first)")
    return json.loads(path.read_text())


def load_model(model_dir: Path) -> Trainer:
    """Reload a saved model (with its preprocessing); `.predict(frame)` works on new rows."""
    meta = read_meta(Path(model_dir))
    return trainer_class(meta["family"]).load(Path(model_dir), meta)
