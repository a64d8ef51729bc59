"""The one parametrised contract every model family passes on tiny data (the trainer interface's estimator checks).

TensorFlow and Torch cannot share a process (their bundled LLVMs abort the interpreter), which is why
the stages isolate families. The suite does the same: in the main pytest process only the CPU
families run; `test_framework_families_in_own_process[tf|torch]` re-runs this file in a child pytest
with TRAINPIPE_CONTRACT_BACKEND set, where only that backend's families run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from trainpipe_bench.synthetic import synthetic_frame

from trainpipe.families.base import FamilyParamError, UnsupportedTaskError
from trainpipe.families.catalogue import ALL_FAMILIES, CATALOGUE, FAMILIES
from trainpipe.families.preprocessing import MissingFeatureError
from trainpipe.families.registry import load_model, make_trainer

FEATURES = ["f3", "f0", "f1", "f2"]  # deliberately not frame order; f4, f5 are extra columns the models must ignore
_NN = {"epochs": 2, "batch_size": 64, "patience": 1}
TINY: dict[str, dict] = {
    "lightgbm": {"n_estimators": 20},
    "quantile_lightgbm": {"n_estimators": 15},
    "xgboost": {"n_estimators": 20},
    "catboost": {"n_estimators": 20},
    "ngboost": {"n_estimators": 15},
    "ensemble": {"n_folds": 2, "base_params": {"lightgbm": {"n_estimators": 10}}},
    "meta_learning": {"n_folds": 2, "base_params": {"lightgbm": {"n_estimators": 10}}},
    "mlp": {**_NN, "hidden": [8]},
    "vae": {**_NN, "hidden": 8, "latent": 2},
    "gan": {**_NN, "hidden": 8, "n_samples": 4},
    "multi_task": {**_NN, "hidden": [8]},
    "cnn1d": {**_NN, "lookback": 5, "channels": 4},
    "lstm": {**_NN, "lookback": 5, "hidden": 4},
    "transformer": {**_NN, "lookback": 5, "d_model": 8, "n_heads": 2},
    "tab_cnn": {**_NN, "d_token": 4, "channels": 4},
    "tab_lstm": {**_NN, "d_token": 4, "hidden": 4},
    "tab_transformer": {**_NN, "n_bins": 4, "d_model": 8, "n_heads": 2},
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(n_ts=70, symbols=("AAA", "BBB", "CCC"), n_features=6, seed=3)


def _make(family: str, task: str = "regression", seed: int = 7, params: dict | None = None):
    target = "y_up_1d" if task == "binary" else "fwd_ret_1d"
    aux = ["fwd_ret_5d"] if family == "multi_task" else []
    return make_trainer(family, features=FEATURES, target=target, task=task, params=params if params is not None else TINY.get(family, {}),
                        seed=seed, horizon_bars=1, aux_targets=aux)


_FITTED: dict[str, object] = {}
_BACKEND = os.environ.get("TRAINPIPE_CONTRACT_BACKEND", "none")
HERE = [f for f in ALL_FAMILIES if FAMILIES[f].backend == _BACKEND]  # families checked in this process
_MAIN = pytest.mark.skipif(_BACKEND != "none", reason="runs in the main pytest process only")


@_MAIN
@pytest.mark.parametrize("backend", ["tf", "torch"])
def test_framework_families_in_own_process(backend: str) -> None:
    env = {**os.environ, "TRAINPIPE_CONTRACT_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    proc = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-x"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"{backend} families failed the contract:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout


def _fitted(family: str, frame: pd.DataFrame):
    if family not in _FITTED:
        _FITTED[family] = _make(family).fit(frame)
    return _FITTED[family]


@_MAIN
def test_catalogue_has_21_families_cpu_before_gpu() -> None:
    assert len(ALL_FAMILIES) == 21
    stages = [s.stage for s in CATALOGUE]
    assert stages == sorted(stages, key=["cpu", "gpu"].index)
    assert {s.name for s in CATALOGUE if s.backend == "torch"} == {"cnn1d", "lstm", "transformer", "tab_cnn", "tab_lstm", "tab_transformer"}
    assert {s.name for s in CATALOGUE if s.backend == "tf"} == {"mlp", "vae", "gan", "multi_task"}


@pytest.mark.parametrize("family", HERE)
def test_family_contract(family: str, frame: pd.DataFrame, tmp_path) -> None:
    model = _fitted(family, frame)
    pred = model.predict(frame)
    assert pred.shape == (len(frame),) and np.isfinite(pred).all(), f"{family}: predictions must be finite, one per row"

    # deterministic with a seed
    again = _make(family).fit(frame).predict(frame)
    np.testing.assert_allclose(again, pred, rtol=1e-6, atol=1e-12, err_msg=f"{family}: same seed gave different predictions")

    # save -> load -> identical predictions (preprocessing travels with the model)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model_meta.json").read_text())
    assert meta["family"] == family and meta["features"] == FEATURES and meta["files"]
    assert all(len(digest) == 64 for digest in meta["files"].values())
    np.testing.assert_array_equal(load_model(tmp_path).predict(frame), pred)

    # honours the plan's feature list: column order and extra columns do not matter
    shuffled = frame[list(reversed(frame.columns))].copy()
    shuffled["f4"] = 1e3
    shuffled["f5"] = np.nan
    shuffled["unrelated"] = "x"
    np.testing.assert_allclose(model.predict(shuffled), pred, rtol=1e-5, atol=1e-9)

    # a missing feature is a clear error naming the family and the column
    with pytest.raises(MissingFeatureError, match=rf"{family}.*f1"):
        model.predict(frame.drop(columns=["f1"]))


# Neural families only, in their backend's child process (the main process has none to parametrise).
if _BACKEND != "none":

    @pytest.mark.parametrize("family", [f for f in HERE if FAMILIES[f].stage == "gpu"])
    def test_gpu_family_on_cpu_trains_within_the_cpu_budget_and_says_so(family: str, frame: pd.DataFrame, tmp_path) -> None:
        model = _fitted(family, frame)
        if model.extra_meta["device"] != "cpu":
            pytest.skip("a GPU is visible: the CPU budget does not apply")
        budget = model.extra_meta["budget"]
        assert budget["device"] == "cpu" and budget["reason"] == "no GPU: CPU budget"
        assert model.params["batch_size"] == budget["batch_size"] == 1024  # TINY asks for 64: raised on CPU
        assert model.extra_meta["epochs_run"] <= budget["epochs"] == 2
        model.save(tmp_path)  # the model reloads with the budget it trained under (its windows keep their length)
        assert load_model(tmp_path).params == model.params
        forced = _make(family, params={**TINY[family], "full_budget_on_cpu": True}).fit(frame)
        assert forced.params["batch_size"] == 64 and forced.extra_meta["budget"]["reason"].startswith("no GPU, full budget forced")


@pytest.mark.parametrize("family", HERE)
def test_family_refuses_look_ahead(family: str, frame: pd.DataFrame) -> None:
    model = _fitted(family, frame)
    pred = model.predict(frame)
    cut = frame["ts"].sort_values().unique()[40]
    future = frame["ts"] > cut
    perturbed = frame.copy()
    perturbed.loc[future, FEATURES] = perturbed.loc[future, FEATURES] * -3.0 + 5.0
    after = model.predict(perturbed)
    # a row's prediction never sees a later row (sequence windows) or any other row (tabular families)
    # (float32 networks may differ in the last bits when the batch shape changes; a leak moves predictions by far more)
    np.testing.assert_allclose(after[~future.to_numpy()], pred[~future.to_numpy()], rtol=1e-5, atol=1e-9)
    if not FAMILIES[family].sequence:
        one = perturbed.iloc[[5]]
        np.testing.assert_allclose(model.predict(one), pred[[5]], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("family", HERE)
def test_family_rejects_bad_parameters(family: str) -> None:
    with pytest.raises(FamilyParamError, match=rf"{family}.*'no_such_param'"):
        _make(family, params={"no_such_param": 1})
    spec = FAMILIES[family]
    positive = next(n for n in ("epochs", "n_estimators", "max_iter", "n_regimes", "max_breakpoints", "n_folds") if n in spec.defaults)
    with pytest.raises(FamilyParamError, match=rf"{family}.*'{positive}'"):
        _make(family, params={positive: -1})


@pytest.mark.parametrize("family", [f for f in HERE if "binary" in {t.value for t in FAMILIES[f].tasks}])
def test_binary_families_output_probabilities(family: str, frame: pd.DataFrame) -> None:
    proba = _make(family, task="binary").fit(frame).predict(frame)
    assert np.all((proba >= 0) & (proba <= 1)), f"{family}: binary predictions must be P(class 1)"
    labels = frame["y_up_1d"].to_numpy()
    ok = np.isfinite(labels)
    if FAMILIES[family].backend == "none":  # two-epoch toy nets are too weak for a direction check
        assert np.corrcoef(proba[ok], labels[ok])[0, 1] > 0, f"{family}: probabilities are inverted"


@pytest.mark.parametrize("family", [f for f in ("lightgbm", "mlp", "quantile_lightgbm", "lstm") if f in HERE])
def test_unsupported_tasks_are_clear_errors(family: str) -> None:
    with pytest.raises(UnsupportedTaskError, match=family):
        _make(family, task="multiclass")


@_MAIN
def test_cpu_families_never_import_tensorflow_or_torch(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import sys
        import trainpipe.families.registry as registry
        from trainpipe.families.catalogue import CPU_FAMILIES
        from trainpipe_bench.synthetic import synthetic_frame
        frame = synthetic_frame(n_ts=60, n_features=4, seed=1)
        tiny = {TINY!r}
        for family in CPU_FAMILIES:
            m = registry.make_trainer(family, features=["f0", "f1", "f2"], target="fwd_ret_1d", task="regression", params=tiny.get(family, {{}}))
            m.fit(frame).predict(frame)
        heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "torch", "keras"))
        print("HEAVY", heavy)
        sys.exit(1 if heavy else 0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Defined only in the torch child process (collected there, not reported as a skip in the main run).
if _BACKEND == "torch":

    def test_sequence_predict_needs_ts_and_symbol(frame: pd.DataFrame) -> None:
        model = _fitted("lstm", frame)
        with pytest.raises(KeyError, match="symbol"):
            model.predict(frame.drop(columns=["symbol"]))
