"""The one settings object of the training calls: what it refuses, and which of its settings decide a unit's model (its fingerprint)."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainpipe_bench.family_bench import benchmark_plan

from trainpipe.families.base import FamilyParamError
from trainpipe.families.catalogue import UnknownFamilyError
from trainpipe.training.settings import TrainingSettings
from trainpipe.training.units import unit_fingerprint

BASE = TrainingSettings(Path("data"), interval="1d", holdout_fraction=0.2, embargo_bars=5, seed=7)
PLAN = benchmark_plan("fwd_ret_1d", ["f0", "f1"], ["lightgbm"])


def _fingerprint(settings: TrainingSettings) -> str:
    return unit_fingerprint(PLAN, PLAN.jobs[0], "lightgbm", settings)


@pytest.mark.parametrize(
    ("change", "retrains"),
    [
        ({"holdout_fraction": 0.25}, True),
        ({"embargo_bars": 6}, True),
        ({"seed": 8}, True),
        ({"interval": "1h"}, True),
        ({"params": {"lightgbm": {"n_estimators": 20}}}, True),
        ({"params": {"xgboost": {"n_estimators": 20}}}, False),  # another family's parameters
        ({"data_dir": Path("elsewhere")}, False),  # the data's digest is in the plan
        ({"families": ("lightgbm",)}, False),
        ({"panel_loader": "trainpipe_bench.synthetic:load_synthetic_panel"}, False),
        ({"isolate": False, "timeout_s": 60.0, "on_progress": print, "reuse": lambda *_: None}, False),
    ],
)
def test_only_what_decides_the_model_is_in_its_fingerprint(change, retrains) -> None:
    changed = TrainingSettings(**{**vars(BASE), **change})
    assert (_fingerprint(changed) != _fingerprint(BASE)) is retrains


@pytest.mark.parametrize(
    ("change", "error", "says"),
    [
        ({"holdout_fraction": 1.0}, ValueError, r"holdout_fraction must be in \(0, 1\), got 1.0"),
        ({"holdout_fraction": 0}, ValueError, "holdout_fraction must be in"),
        ({"embargo_bars": -1}, ValueError, "embargo_bars must be >= 0, got -1"),
    ],
)
def test_a_split_that_cannot_be_made_is_refused_when_built(change, error, says) -> None:
    with pytest.raises(error, match=says):
        TrainingSettings(**{**vars(BASE), **change})


def test_families_and_parameters_are_checked_by_name() -> None:
    settings = TrainingSettings(Path("data"), families=("LightGBM", "tab-lstm"), params={"lightgbm": {"n_estimators": -5}})
    assert settings.family_filter() == ["lightgbm", "tab_lstm"]
    assert TrainingSettings(Path("data")).family_filter() is None
    with pytest.raises(FamilyParamError, match="lightgbm.*n_estimators"):
        settings.params_for("lightgbm")
    with pytest.raises(UnknownFamilyError, match="RandomForest"):
        TrainingSettings(Path("data"), families=("RandomForest",)).family_filter()
