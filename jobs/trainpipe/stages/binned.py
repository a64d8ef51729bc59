"""One LightGBM binned dataset per stage, row subsets of it, and the booster settings, shared by rank and select.

Binning once and training every target and fold on a subset of the bins avoids rebinning per target
(issue #2) and keeps LightGBM's copy of the data at one byte per cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainpipe.contract.names import TaskType
from trainpipe.memory import release

MAX_BIN = 63
# Bin borders come from this many sampled rows: 63 borders need no more (over 300 rows per bin), and
# LightGBM's default sample (200,000) holds every sampled value per feature while binning — the largest
# transient of a stage on a large panel.
BIN_SAMPLE_ROWS = 20_000
# Small, regularised boosters: rank compares targets and select compares features; neither needs the
# best model of each.
BOOSTER_PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}


def booster_params(task: TaskType, n_classes: int, seed: int, threads: int) -> dict:
    """BOOSTER_PARAMS with the objective of `task` (labels 0..n_classes-1 for classification)."""
    p: dict[str, Any] = dict(BOOSTER_PARAMS, seed=seed, num_threads=threads)
    if task is TaskType.REGRESSION:
        p["objective"] = "regression"
    elif n_classes <= 2:
        p["objective"] = "binary"
    else:
        p.update(objective="multiclass", num_class=n_classes)
    return p


def binned_dataset(x: np.ndarray, seed: int, feature_names: list[str] | None = None):
    """Bin the float32 feature matrix once; the result holds only the bins.

    free_raw_data=True because a subset of a dataset that keeps its raw data also copies the raw rows
    (x[rows]) on construction; the caller still holds x for predictions.
    """
    import lightgbm as lgb

    data = lgb.Dataset(
        x, label=np.zeros(len(x), dtype=np.float32), feature_name=feature_names or "auto", free_raw_data=True,
        params={"max_bin": MAX_BIN, "bin_construct_sample_cnt": BIN_SAMPLE_ROWS, "verbose": -1, "seed": seed},
    ).construct()
    release()  # binning's sampled values lived in temporary buffers; return them before training starts
    return data


def subset(base, rows: np.ndarray, label: np.ndarray):
    """The rows `rows` (ascending) of a binned dataset, labelled with `label`, constructed.

    `Dataset.subset` stores the indices as a sorted Python list (about 40 bytes a row, alive while the
    subset trains); the constructor takes the int32 array as it is, so it is set directly.
    """
    data = base.subset([])
    data.used_indices = np.ascontiguousarray(rows, dtype=np.int32)
    data.construct()
    data.set_label(label)
    return data
