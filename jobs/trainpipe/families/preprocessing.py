"""Feature preprocessing every trainer fits and saves with its model: column order, median imputer, optional scaler.

Called by `trainpipe.families.base.Trainer` on fit and on predict. The state is plain JSON
(`preprocessing.json`) so a saved model can be inspected and reloaded without pickles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FILE_NAME = "preprocessing.json"
CLIP = 1e6  # guards against inf/huge values reaching a solver; far outside any sane feature scale


class MissingFeatureError(KeyError):
    """The frame given to fit/predict lacks a feature the model was trained on."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def select_features(frame: pd.DataFrame, features: Sequence[str], who: str) -> np.ndarray:
    """The features of `frame` by name, in `features` order, as float64; a missing column is a clear error."""
    missing = [name for name in features if name not in frame.columns]
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise MissingFeatureError(
            f"{who}: the frame lacks {len(missing)} feature column(s) the model was trained on: {shown}; "
            "pass a frame with every feature of the plan job"
        )
    values = frame.loc[:, list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.clip(np.where(np.isinf(values), np.nan, values), -CLIP, CLIP)


@dataclass
class Preprocessor:
    """Median imputation, then (optionally) standard scaling, with the feature order fixed at fit."""

    features: list[str]
    scale: bool
    medians: np.ndarray | None = None
    means: np.ndarray | None = None
    stds: np.ndarray | None = None

    def fit(self, values: np.ndarray) -> Preprocessor:
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: median is NaN, handled below
                medians = np.nanmedian(values, axis=0)
        # A column that is NaN in every training row carries no information: impute 0 so it is constant.
        self.medians = np.where(np.isfinite(medians), medians, 0.0)
        filled = self._impute(values)
        if self.scale:
            self.means = filled.mean(axis=0)
            stds = filled.std(axis=0)
            self.stds = np.where(stds > 1e-12, stds, 1.0)  # constant columns stay constant (0) after scaling
        return self

    def _impute(self, values: np.ndarray) -> np.ndarray:
        assert self.medians is not None, "Preprocessor.fit must run before transform"
        return np.where(np.isnan(values), self.medians, values)

    def transform(self, values: np.ndarray) -> np.ndarray:
        out = self._impute(values)
        if self.scale:
            assert self.means is not None and self.stds is not None
            out = (out - self.means) / self.stds
        return out

    def to_dict(self) -> dict:
        def lst(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [float(v) for v in a]

        return {"features": list(self.features), "scale": self.scale, "medians": lst(self.medians), "means": lst(self.means), "stds": lst(self.stds)}

    @classmethod
    def from_dict(cls, raw: dict) -> Preprocessor:
        def arr(v: list[float] | None) -> np.ndarray | None:
            return None if v is None else np.asarray(v, dtype=np.float64)

        return cls(features=list(raw["features"]), scale=bool(raw["scale"]), medians=arr(raw["medians"]), means=arr(raw["means"]), stds=arr(raw["stds"]))

    def save(self, folder: Path) -> Path:
        path = folder / FILE_NAME
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, folder: Path) -> Preprocessor:
        return cls.from_dict(json.loads((folder / FILE_NAME).read_text()))
