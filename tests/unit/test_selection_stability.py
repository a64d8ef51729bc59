"""Selection stability: the combined state, the block bootstrap, the resampled check, and the comparison with a previous run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainpipe.contract.names import Stability, TaskType
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.selection import ResampledCheck, TargetSelection
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import write_selection
from trainpipe.runner.steps import RunContext
from trainpipe.runner.steps.stability import GIVEN_FEATURES, against_previous, previous_selection, selection_stability
from trainpipe.stages.stability import (
    ResampleParams,
    block_bars,
    block_bootstrap_counts,
    combine,
    grade_resamples,
    resampled_stability,
    target_rows,
    top_features,
)

S, D, X, U = Stability.STABLE, Stability.DRIFTING, Stability.DIVERGED, Stability.UNKNOWN


@pytest.mark.parametrize(("previous", "resampled", "combined"), [
    (U, U, U),  # neither check made: a first run with nothing measured
    (U, S, S), (U, D, D), (U, X, X),  # a first run: the resamples decide
    (S, U, S), (D, U, D),  # too few bars to resample: the previous run decides
    (S, S, S), (S, D, D), (D, S, D), (S, X, X), (X, S, X), (D, X, X),  # both made: the worse one
])
def test_combine_takes_the_worse_of_the_checks_made(previous, resampled, combined):
    assert combine(previous, resampled) is combined


@pytest.mark.parametrize(("timestamps", "horizon", "embargo", "block"), [
    (2500, 1, 5, 14),  # daily bars over ten years: the T^(1/3) rate
    (2500, 20, 5, 25),  # a 20-bar label: never cut inside its horizon and embargo
    (300, 1, 0, 7),
    (1, 0, 0, 1),
])
def test_block_length(timestamps, horizon, embargo, block):
    assert block_bars(timestamps, horizon, embargo) == block


def test_the_block_bootstrap_draws_whole_blocks_of_consecutive_timestamps():
    counts = block_bootstrap_counts(100, 10, np.random.default_rng(3))
    assert counts.sum() == 100 and counts.shape == (100,)
    assert np.array_equal(counts, block_bootstrap_counts(100, 10, np.random.default_rng(3)))  # seeded
    drawn = np.flatnonzero(counts)
    runs = np.split(drawn, np.flatnonzero(np.diff(drawn) != 1) + 1)
    assert all(len(r) >= 10 for r in runs[:-1])  # every stretch but a cut last one is at least a block long
    assert block_bootstrap_counts(5, 10, np.random.default_rng(0)).tolist() == [1, 1, 1, 1, 1]  # a block longer than the series


def test_top_features_leaves_out_features_never_split_on_and_breaks_ties_by_name():
    assert top_features(np.array([0.0, 3.0, 1.0, 3.0, np.nan]), ["a", "z", "c", "b", "n"], 3) == ["b", "z", "c"]
    assert top_features(np.zeros(3), ["a", "b", "c"], 2) == []


def test_grading_resamples():
    assert grade_resamples(["a", "b", "c"], [["a", "b", "c"], ["a", "b", "c"]], 5).stability is S
    mixed = grade_resamples(["a", "b", "c"], [["a", "b", "c"], ["x", "y", "z"]], 5)
    assert (mixed.stability, mixed.overlap, mixed.kendall_tau, mixed.resamples) == (D, 0.5, 1.0, 2)  # tau only where defined
    swapped = grade_resamples(["a", "b", "c"], [["c", "b", "a"], ["x", "y", "a"]], 5)
    assert (swapped.stability, swapped.kendall_tau) == (X, -1.0)
    assert grade_resamples([], [["a"]], 5).stability is U


def _panel(seed: int, strengths: tuple[float, ...], n_days: int = 600, n_noise: int = 5) -> pd.DataFrame:
    """Four symbols; y = Σ strength·s_i + unit noise, so s0 > s1 > s2 in gain when the strengths say so; noise_* never matter."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2020-01-01", periods=n_days, freq="D", tz="UTC")
    frames = []
    for sym in ("AAA", "BBB", "CCC", "DDD"):
        f = pd.DataFrame({"ts": ts, "symbol": sym})
        y = rng.normal(size=n_days)
        for i, s in enumerate(strengths):
            f[f"s{i}"] = rng.normal(size=n_days)
            y = y + s * f[f"s{i}"].to_numpy()
        for k in range(n_noise):
            f[f"noise_{k}"] = rng.normal(size=n_days)
        f["y"] = y
        frames.append(f)
    return pd.concat(frames).sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


def _resampled(frame: pd.DataFrame, seed: int, k: int = 3):
    features = [c for c in frame.columns if c not in ("ts", "symbol", "y")]
    rows = {"y": target_rows(frame["y"].to_numpy(np.float64), frame["ts"].to_numpy(), TaskType.REGRESSION, 1, k)}
    return resampled_stability(frame[features].to_numpy(np.float32), features, rows, ResampleParams(seed=seed, embargo_bars=2, threads=1))["y"]


SIGNAL, NOISE = (0.6, 0.35, 0.2), (0.0, 0.0, 0.0)


def test_resampled_stability_is_deterministic():
    frame = _panel(0, NOISE)
    assert _resampled(frame, 0) == _resampled(frame, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_planted_signal_is_stable_across_resamples(seed):
    # Measured on seeds 0-5: overlap 1.0 and tau 1.0 every time (three strengths well apart).
    got = _resampled(_panel(seed, SIGNAL), seed)
    assert got.stability is S and got.overlap >= 0.9 and got.kendall_tau >= 0.9
    assert (got.resamples, got.block_bars) == (3, 8)


def test_noise_is_not_stable_across_resamples():
    # Measured on seeds 0-5: DIVERGED five times, DRIFTING once; mean overlap 0.44, at most 0.67 (STABLE needs 0.7).
    got = [_resampled(_panel(seed, NOISE), seed) for seed in range(4)]
    assert all(g.stability is not S for g in got), got
    assert np.mean([g.overlap for g in got]) <= 0.6


def test_select_s_own_lightgbm_gains_are_the_reference_the_check_would_train():
    # The check reuses select's full-data booster instead of training it again: same dataset, rows, labels and
    # parameters, so its gains must be the ones the check computes itself, and the verdict the same.
    from trainpipe.stages.select import SelectParams, TargetToSelect, select_all

    frame = _panel(4, SIGNAL)
    features = [c for c in frame.columns if c not in ("ts", "symbol", "y")]
    x = frame[features].to_numpy(np.float32)
    params = SelectParams(methods=("lightgbm_gain", "xgboost_gain", "catboost", "mutual_info"), min_support=1, top_m=3, holdout_fraction=0.2,
                          embargo_bars=2, seed=4, threads=1)
    chosen = select_all(frame, [TargetToSelect("y", TaskType.REGRESSION, 1)], features, params, x=x)["y"]
    rows = {"y": target_rows(frame["y"].to_numpy(np.float64), frame["ts"].to_numpy(), TaskType.REGRESSION, 1, len(chosen.features))}
    resample = ResampleParams(seed=4, embargo_bars=2, threads=1)
    trained = resampled_stability(x, features, rows, resample)["y"]
    reused = resampled_stability(x, features, rows, resample, reference_gains={"y": chosen.lightgbm_gains})["y"]
    assert reused == trained and trained.overlap is not None


def test_too_few_bars_for_eight_blocks_is_unknown_with_the_reason():
    got = _resampled(_panel(0, SIGNAL, n_days=20), 0)  # 3-bar blocks: 8 need 24 timestamps
    assert got.stability is U and got.resamples == 0 and "fewer than 8 blocks" in got.note


# ------------------------------------------------------------------------------ against the previous run

def _ctx(out: Path, previous: Path | None) -> RunContext:
    return RunContext(spec=PipelineSpec.model_validate({"data": {"dir": "unused"}}), layout=Layout(out), previous_run=previous)


def _write(folder: Path, target: str, features: list[str]) -> None:
    stab = selection_stability(against_previous(features, previous_selection(_ctx(folder, None), target)), GIVEN_FEATURES)
    write_selection(Layout(folder), TargetSelection(target=target, task=TaskType.REGRESSION, features=features, stability=stab))


def test_a_selection_is_compared_with_the_given_previous_run_folder(tmp_path):
    _write(tmp_path / "r1", "fwd_ret_1d", ["a", "b", "c", "d"])
    got = against_previous(["a", "b", "c", "e"], previous_selection(_ctx(tmp_path / "r2", tmp_path / "r1"), "fwd_ret_1d"))
    assert (got.state, got.overlap, got.previous_run, got.previous_features) == (D, 0.6, str(tmp_path / "r1"), ["a", "b", "c", "d"])


def test_a_previous_selection_of_an_older_schema_still_counts(tmp_path):
    path = Layout(tmp_path / "r1").selected_features("t")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema_version": "trainpipe.io/selection/v1", "target": "t", "task": "regression", "features": ["a", "b"],
                                "stability": {"state": "UNKNOWN", "overlap": None, "kendall_tau": None, "previous_features": None}}))
    got = against_previous(["a", "b"], previous_selection(_ctx(tmp_path / "r2", tmp_path / "r1"), "t"))
    assert (got.state, got.overlap, got.kendall_tau) == (S, 1.0, 1.0)


@pytest.mark.parametrize(("content", "says"), [
    (None, "is missing (that run did not select 't')"),
    ("{not json", "cannot read it"),
    (json.dumps({"target": "other", "features": ["a"]}), "not a selection of 't'"),
])
def test_a_missing_or_unreadable_previous_selection_means_no_comparison_with_the_reason(tmp_path, content, says):
    if content is not None:
        path = Layout(tmp_path / "r1").selected_features("t")
        path.parent.mkdir(parents=True)
        path.write_text(content)
    got = against_previous(["a"], previous_selection(_ctx(tmp_path / "r2", tmp_path / "r1"), "t"))
    assert got.state is U and got.overlap is None and got.previous_run == str(tmp_path / "r1")
    assert got.note.startswith("no comparison with the previous run") and says in got.note


def test_without_a_previous_run_the_folders_own_earlier_selection_counts(tmp_path):
    first = against_previous(["a", "b"], previous_selection(_ctx(tmp_path, None), "t"))
    assert first.state is U and first.note.startswith("first run") and first.previous_run is None
    _write(tmp_path, "t", ["a", "b"])
    again = against_previous(["b", "a"], previous_selection(_ctx(tmp_path, None), "t"))
    assert (again.state, again.previous_features, again.previous_run) == (X, ["a", "b"], None)


def test_the_selection_records_both_checks_and_routing_reads_the_worse():
    previous = against_previous(["a", "b", "c"], previous_selection_of(["a", "b", "c"]))
    drifting = ResampledCheck(state=D, overlap=0.6, kendall_tau=0.5, resamples=3, block_bars=8, seed=7)
    stab = selection_stability(previous, drifting)
    assert (stab.state, stab.against_previous.state, stab.resampled.state) == (D, S, D)
    assert selection_stability(previous.model_copy(update={"state": U}), GIVEN_FEATURES).state is S


def previous_selection_of(features: list[str]):
    from trainpipe.runner.steps.stability import PreviousSelection

    return PreviousSelection("/artifacts/ns/demo/r-good", features)


# ------------------------------------------------------------------------------ where users read it

def test_the_report_shows_an_unknown_stability_as_first_run(tmp_path):
    from types import SimpleNamespace

    from trainpipe.report.html import _selection_section

    nothing = ResampledCheck(state=U, overlap=None, kendall_tau=None, note="19 timestamps are fewer than 8 blocks of 3 bars", resamples=0)
    stab = selection_stability(against_previous(["a"], previous_selection(_ctx(tmp_path, None), "t")), nothing)
    write_selection(Layout(tmp_path), TargetSelection(target="t", task=TaskType.REGRESSION, features=["a"], stability=stab))
    page = _selection_section(Layout(tmp_path), SimpleNamespace(selected=["t"]))
    assert "stability first run</summary>" in page and "UNKNOWN" not in page
    assert "against the previous run: first run — first run: no earlier selection" in page and "fewer than 8 blocks" in page


def test_the_report_shows_each_check_that_was_made(tmp_path):
    from types import SimpleNamespace

    from trainpipe.report.html import _selection_section

    measured = ResampledCheck(state=D, overlap=0.6, kendall_tau=0.5, resamples=3, block_bars=8, seed=7)
    stab = selection_stability(against_previous(["a", "b"], previous_selection_of(["a", "b"])), measured)
    write_selection(Layout(tmp_path), TargetSelection(target="t", task=TaskType.REGRESSION, features=["a", "b"], stability=stab))
    page = _selection_section(Layout(tmp_path), SimpleNamespace(selected=["t"]))
    assert "stability DRIFTING</summary>" in page
    assert "against the previous run /artifacts/ns/demo/r-good: STABLE (overlap 1.0000, τ 1.0000)" in page
    assert "on 3 block-bootstrap resamples (8-bar blocks): DRIFTING (mean overlap 0.6000, mean τ 0.5000)" in page


def test_the_cli_summary_shows_an_unknown_stability_as_first_run():
    from trainpipe.cli.display import describe
    from trainpipe.contract.selection import SelectionEntry
    from trainpipe.contract.summaries import SelectStageSummary

    line = describe(SelectStageSummary(targets={"t": SelectionEntry(n_features=2, stability=U), "u": SelectionEntry(n_features=1, stability=S)}))
    assert line == "t: 2 features, first run; u: 1 features, stable"


def test_a_previous_run_that_is_the_output_folder_itself_is_its_own_earlier_selection(tmp_path):
    _write(tmp_path, "t", ["a", "b"])
    got = against_previous(["b", "a"], previous_selection(_ctx(tmp_path, tmp_path / "."), "t"))
    assert (got.state, got.previous_run) == (X, None)
