"""The one trainer interface every family implements, with the shared fit/predict/save/load machinery.

Called by the stage worker (`trainpipe.training.worker`), the contract tests and `load_model`.
A family subclass implements `_fit`, `_predict`, `_save` and `_load` on preprocessed numpy arrays;
this base owns feature selection by name, the median imputer and scaler, the label encoding, the
parameter checks, and `model_meta.json` with the checksums of every model file.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from trainpipe.contract.names import SYMBOL_COLUMN, TIMESTAMP_COLUMN, TaskType
from trainpipe.contract.targets import positive_label
from trainpipe.data.frames import frame_symbols, frame_ts
from trainpipe.families.catalogue import FAMILIES, FamilySpec
from trainpipe.families.preprocessing import Preprocessor, select_features
from trainpipe.io.atomic import json_default

META_FILE = "model_meta.json"
META_VERSION = 1

# Distributions whose versions every model records, plus the backend's own.
_BASE_LIBS = ("numpy", "pandas", "scikit-learn", "trainpipe")
_BACKEND_LIBS = {"none": (), "tf": ("tensorflow", "tensorflow-cpu", "keras"), "torch": ("torch",)}


class FamilyParamError(ValueError):
    """A parameter a family does not know, or a value it cannot use; the message names both."""


class UnsupportedTaskError(ValueError):
    """The family cannot train this task (e.g. multiclass)."""


class ModelIntegrityError(RuntimeError):
    """A saved model's files do not match the checksums in its model_meta.json."""


# Parameters that may be 0 (penalties, rates that can be switched off); other numeric params whose
# default is positive must stay positive (epochs, trees, sizes, learning rates).
_NON_NEGATIVE = {"l1", "l2", "alpha", "reg_alpha", "reg_lambda", "l2_leaf_reg", "dropout", "patience", "early_stopping_rounds",
                 "validation_fraction", "beta", "aux_weight", "supervised_weight", "head_weight", "penalty"}
_UNIT_INTERVAL_OPEN = {"subsample", "colsample_bytree", "minibatch_frac", "recent_fraction", "min_segment_fraction"}  # (0, 1]
_HALF_OPEN_FRACTION = {"dropout", "validation_fraction"}  # [0, 1)


def check_params(family: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults of `family` overridden by `params`; an unknown name or a bad value raises FamilyParamError."""
    spec = FAMILIES[family]
    merged = dict(spec.defaults)
    for name, value in (params or {}).items():
        if name not in spec.defaults:
            raise FamilyParamError(
                f"family {family!r}: unknown parameter {name!r}; valid parameters: {', '.join(sorted(spec.defaults))}"
            )
        merged[name] = _check_value(family, name, value, spec.defaults[name])
    return merged


def _check_value(family: str, name: str, value: Any, default: Any) -> Any:
    def bad(why: str) -> FamilyParamError:
        return FamilyParamError(f"family {family!r}: parameter {name!r} {why}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(default, int) and not isinstance(value, int)):
            raise bad(f"must be {'an integer' if isinstance(default, int) else 'a number'}")
        if not np.isfinite(value):
            raise bad("must be finite")
        if name in _UNIT_INTERVAL_OPEN and not 0 < value <= 1:
            raise bad("must be in (0, 1]")
        if name in _HALF_OPEN_FRACTION and not 0 <= value < 1:
            raise bad("must be in [0, 1)")
        if name in _NON_NEGATIVE and value < 0:
            raise bad("must be >= 0")
        if default > 0 and name not in _NON_NEGATIVE and value <= 0:
            raise bad("must be > 0")
        return float(value) if isinstance(default, float) else value
    if isinstance(default, list):
        if not isinstance(value, list | tuple) or not value:
            raise bad("must be a non-empty list")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in default) and not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
        ):
            raise bad("must be a list of positive integers")
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad("must be a mapping")
        return dict(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("must be a string")
        return value
    return value


def num_threads() -> int:
    """Threads a family may use, from the stage's thread plan (TRAINPIPE_NUM_THREADS); 1 when unset (tests)."""
    try:
        return max(1, int(os.environ.get("TRAINPIPE_NUM_THREADS", "1")))
    except ValueError:
        return 1


def library_versions(backend: str, extra: Sequence[str] = ()) -> dict[str, str]:
    versions: dict[str, str] = {}
    for dist in (*_BASE_LIBS, *_BACKEND_LIBS.get(backend, ()), *extra):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Rows:
    """Row context a family may need besides the feature matrix: timestamps and symbols, in frame order."""

    ts: np.ndarray  # datetime64[ns]
    symbols: np.ndarray  # str


class Trainer(ABC):
    """Base of every family: fit on a frame with the job's ordered features, predict on new rows, save, load.

    Subclasses set `family` and `scale` (whether features are standardised), and may set `libs`
    (extra distributions to record). Classification families return the probability of class 1.
    """

    family: ClassVar[str]
    scale: ClassVar[bool] = False
    libs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        features: Sequence[str],
        target: str,
        task: TaskType | str,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
        horizon_bars: int = 1,
        aux_targets: Sequence[str] = (),
    ) -> None:
        self.spec: FamilySpec = FAMILIES[self.family]
        self.task = TaskType(task)
        if self.task not in self.spec.tasks:
            raise UnsupportedTaskError(
                f"{self.task.value} targets are not supported by {self.family!r} (target {target!r}); "
                f"it trains {', '.join(sorted(t.value for t in self.spec.tasks))}"
            )
        if not features:
            raise ValueError(f"{self.family}: empty feature list for target {target!r}; the plan job must list its features")
        if len(set(features)) != len(features):
            raise ValueError(f"{self.family}: the feature list for target {target!r} names a column twice")
        self.features = list(features)
        self.target = target
        self.params = check_params(self.family, params)
        self._check(self.params)
        self.seed = int(seed)
        self.horizon_bars = max(1, int(horizon_bars))
        self.aux_targets = [t for t in aux_targets if t != target]
        self.pre: Preprocessor | None = None
        self.extra_meta: dict[str, Any] = {}

    # ---- hooks for the families -------------------------------------------------------------
    def _check(self, params: dict[str, Any]) -> None:  # noqa: B027 - optional hook, most families need none
        """Family-specific parameter checks beyond check_params (raise FamilyParamError)."""

    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        """Fit on preprocessed features `x` (rows in time order) and encoded labels `y`."""

    @abstractmethod
    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        """Point forecast (regression) or probability of class 1 (binary), one value per row."""

    @abstractmethod
    def _save(self, folder: Path) -> list[str]:
        """Write the model files into `folder`; return their names (relative)."""

    @abstractmethod
    def _load(self, folder: Path) -> None:
        """Restore what `_save` wrote."""

    # ---- shared machinery --------------------------------------------------------------------
    def err(self, what: str) -> str:
        return f"{self.family} (target {self.target!r}): {what}"

    def fit(self, frame: pd.DataFrame) -> Trainer:
        """Fit on `frame` (needs 'ts', the features and the target; rows with a NaN target are dropped)."""
        if self.target not in frame.columns:
            raise KeyError(self.err(f"the frame has no target column {self.target!r}"))
        if TIMESTAMP_COLUMN not in frame.columns:
            raise KeyError(self.err(f"the frame needs a {TIMESTAMP_COLUMN!r} column to order rows in time"))
        data = frame.loc[frame[self.target].notna()]
        data = data.iloc[np.lexsort((frame_symbols(data), frame_ts(data)))]  # time order, ties by symbol: online learners and tails rely on it
        if len(data) < 10:
            raise ValueError(self.err(f"only {len(data)} rows with a non-NaN target; need at least 10 to train"))
        raw = select_features(data, self.features, self.family)
        self.pre = Preprocessor(self.features, scale=self.scale).fit(raw)
        y = self._encode(data[self.target].to_numpy(dtype=np.float64))
        self._fit(self.pre.transform(raw), y, Rows(frame_ts(data), frame_symbols(data)), data)
        return self

    def _encode(self, y: np.ndarray) -> np.ndarray:
        if self.task is TaskType.BINARY:
            values = np.unique(y)
            if len(values) > 2:
                raise ValueError(self.err(f"binary target has {len(values)} distinct values; expected two (0/1)"))
            if len(values) < 2:
                raise ValueError(self.err("binary target has one class only in the training rows; cannot train a classifier"))
            return (y == positive_label(values)).astype(np.float64)  # the one encoding evaluation uses too
        return y

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions for every row of `frame`, in its order; features are picked by name."""
        if self.pre is None:
            raise RuntimeError(self.err("predict called before fit or load"))
        x = self.pre.transform(select_features(frame, self.features, self.family))
        rows = None
        if self.spec.sequence:
            missing = [c for c in (TIMESTAMP_COLUMN, SYMBOL_COLUMN) if c not in frame.columns]
            if missing:
                raise KeyError(self.err(f"a sequence model needs {missing} columns to build past-only windows per symbol"))
            rows = Rows(frame_ts(frame), frame_symbols(frame))
        out = np.asarray(self._predict(x, rows), dtype=np.float64).reshape(-1)
        if len(out) != len(frame):
            raise RuntimeError(self.err(f"produced {len(out)} predictions for {len(frame)} rows"))
        return out

    def save(self, folder: Path) -> dict[str, Any]:
        """Write model files, preprocessing.json and model_meta.json (with sha256 of each file) into `folder`."""
        if self.pre is None:
            raise RuntimeError(self.err("save called before fit"))
        folder.mkdir(parents=True, exist_ok=True)
        files = sorted({*self._save(folder), self.pre.save(folder).name})
        meta = {
            "meta_version": META_VERSION,
            "family": self.family,
            "stage": self.spec.stage,
            "backend": self.spec.backend,
            "target": self.target,
            "task": self.task.value,
            "features": self.features,
            "n_features": len(self.features),
            "aux_targets": self.aux_targets,
            "params": self.params,
            "seed": self.seed,
            "horizon_bars": self.horizon_bars,
            "sequence": self.spec.sequence,
            "library_versions": library_versions(self.spec.backend, self.libs),
            "files": {name: sha256_file(folder / name) for name in files},
            "extra": self.extra_meta,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=json_default) + "\n")
        return meta

    @classmethod
    def load(cls, folder: Path, meta: Mapping[str, Any]) -> Trainer:
        for name, digest in meta["files"].items():
            path = folder / name
            if not path.exists():
                raise ModelIntegrityError(f"{folder}: model file {name} listed in {META_FILE} is missing; retrain this unit")
            if sha256_file(path) != digest:
                raise ModelIntegrityError(f"{folder}: {name} does not match its sha256 in {META_FILE}; the file changed after training")
        model = cls(
            features=meta["features"],
            target=meta["target"],
            task=meta["task"],
            params=meta["params"],
            seed=meta["seed"],
            horizon_bars=meta["horizon_bars"],
            aux_targets=meta.get("aux_targets", ()),
        )
        model.pre = Preprocessor.load(folder)
        model.extra_meta = dict(meta.get("extra", {}))
        model._load(folder)
        return model

    # helpers for families ---------------------------------------------------------------------
    def tail_split(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """Time-ordered early-stopping split of the training rows (validation = latest tail, purged)."""
        from trainpipe.families.early_stopping import early_stopping_split

        return early_stopping_split(rows.ts, float(self.params.get("validation_fraction", 0.15)), self.horizon_bars)
