"""Routing candidates from ranking's out-of-sample fold scores: means, intervals, real sample sizes, NaN folds, order."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from trainpipe.contract.names import Leakage, Stability, TaskType
from trainpipe.stages.candidates import CANDIDATE_COLUMNS, build_candidates, candidates_frame


def oos(rows, horizon_bars=1):
    """Rows of (target, symbol, fold, score, n_samples); task/metric/horizon follow the target's prefix."""
    records = []
    for target, symbol, fold, score, n in rows:
        regression = target.startswith("fwd_ret_")
        records.append(
            {
                "target": target,
                "symbol": symbol,
                "fold": fold,
                "task": "regression" if regression else "binary",
                "metric_name": "ic" if regression else "auc",
                "score": score,
                "n_samples": n,
                "horizon_minutes": 1440 if regression else None,
                "horizon_bars": horizon_bars,
                "score_sd": np.nan,
                "timestamps": 0,
                "ir": np.nan,
            }
        )
    return pd.DataFrame.from_records(records)


FRAME = oos(
    [
        # target, symbol, fold, score, n
        ("y_up", "BBB", 0, 0.60, 100),
        ("y_up", "BBB", 1, np.nan, 90),  # one class in this fold: ignored, rows not counted
        ("y_up", None, 0, 0.55, 400),
        ("y_up", None, 1, 0.57, 410),
        ("fwd_ret_1d", "AAA", 0, 0.02, 200),
        ("fwd_ret_1d", "AAA", 1, 0.04, 210),
        ("fwd_ret_1d", "AAA", 2, 0.06, 220),
        ("fwd_ret_1d", None, 0, 0.01, 1000),
        ("fwd_ret_1d", None, 1, 0.03, 1000),
        ("fwd_ret_1d", "ZZZ", 0, np.nan, 50),  # every fold NaN: no candidate
        ("fwd_ret_1d", "ZZZ", 1, np.nan, 50),
    ]
)


def by_key(cands):
    return {(c.target, c.symbol): c for c in cands}


def test_order_target_then_cs_first_then_symbol():
    cands = build_candidates(FRAME, {}, {})
    assert [(c.target, c.symbol) for c in cands] == [("fwd_ret_1d", None), ("fwd_ret_1d", "AAA"), ("y_up", None), ("y_up", "BBB")]
    # Row order of the input does not matter.
    assert build_candidates(FRAME.sample(frac=1.0, random_state=3), {}, {}) == cands


def test_mean_ci_and_real_sample_size():
    c = by_key(build_candidates(FRAME, {}, {}))[("fwd_ret_1d", "AAA")]
    # Each fold's own sampling error (a correlation on n rows: 1/√(n − 3)), not the spread of three fold scores,
    # which is too noisy to test against; the mean of three folds has √(Σ se²)/3, on 630 − 1 degrees of freedom.
    se = math.sqrt(1 / 197 + 1 / 207 + 1 / 217) / 3
    half = student_t.ppf(0.975, 629) * se
    assert c.score == pytest.approx(0.04) and c.score_se == pytest.approx(se) and c.effective_n == 630
    assert (c.score_ci_low, c.score_ci_high) == pytest.approx((0.04 - half, 0.04 + half))
    assert (c.sample_size, c.n_folds) == (630, 3)
    assert (c.task, c.metric_name, c.horizon_minutes) == (TaskType.REGRESSION, "ic", 1440)
    cs = by_key(build_candidates(FRAME, {}, {}))[("fwd_ret_1d", None)]
    assert (cs.score, cs.sample_size, cs.n_folds) == (pytest.approx(0.02), 2000, 2)


def test_nan_folds_ignored_and_a_single_fold_interval_counts_its_effective_size():
    c = by_key(build_candidates(FRAME, {}, {}))[("y_up", "BBB")]
    assert (c.score, c.n_folds, c.sample_size) == (0.60, 1, 100)
    half = student_t.ppf(0.975, 99) / math.sqrt(300)
    assert (c.score_ci_low, c.score_ci_high) == pytest.approx((0.60 - half, 0.60 + half))
    assert (c.task, c.horizon_minutes) == (TaskType.BINARY, None)
    # The same 100 rows of 20-bar labels are about 5 independent observations: a far wider interval.
    overlapping = by_key(build_candidates(oos([("y_up", "BBB", 0, 0.60, 100)], horizon_bars=20), {}, {}))[("y_up", "BBB")]
    assert overlapping.score_ci_high - overlapping.score_ci_low == pytest.approx(2 * student_t.ppf(0.975, 4) / math.sqrt(15))


def test_a_single_cross_sectional_fold_uses_its_per_timestamp_spread():
    frame = oos([("fwd_ret_5d", None, 0, 0.03, 3000)], horizon_bars=5)
    frame["score_sd"], frame["timestamps"] = 0.2, 1000
    cs = build_candidates(frame, {}, {})[0]
    assert cs.score_ci_high - cs.score - 0 == pytest.approx(student_t.ppf(0.975, 199) * 0.2 / math.sqrt(1000 / 5))


def test_the_cross_section_carries_the_mean_ir_of_its_folds_and_symbols_none():
    frame = FRAME.copy()
    cs_rows = frame["symbol"].isna() & (frame["target"] == "fwd_ret_1d")
    frame.loc[cs_rows, "ir"] = [0.5, np.nan]  # a fold with too few timestamps for a spread has no IR
    frame.loc[frame["symbol"] == "AAA", "ir"] = 9.0  # never read: a symbol's score has no per-timestamp spread
    cands = by_key(build_candidates(frame, {}, {}))
    assert cands[("fwd_ret_1d", None)].ir == pytest.approx(0.5)
    assert cands[("fwd_ret_1d", "AAA")].ir is None
    assert cands[("y_up", None)].ir is None  # no fold has an IR
    assert candidates_frame(list(cands.values()))["ir"].dtype == "float64"


def test_all_nan_side_has_no_candidate():
    assert ("fwd_ret_1d", "ZZZ") not in by_key(build_candidates(FRAME, {}, {}))


def test_stability_and_leakage_per_target_default_unknown():
    cands = by_key(build_candidates(FRAME, {"fwd_ret_1d": Stability.STABLE}, {"y_up": Leakage.BLOCKED}))
    assert cands[("fwd_ret_1d", "AAA")].stability is Stability.STABLE
    assert cands[("fwd_ret_1d", "AAA")].leakage_status is Leakage.UNKNOWN
    assert cands[("y_up", "BBB")].stability is Stability.UNKNOWN
    assert cands[("y_up", None)].leakage_status is Leakage.BLOCKED


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['n_samples'\]"):
        build_candidates(FRAME.drop(columns="n_samples"), {}, {})
    mixed = FRAME.copy()
    mixed.loc[0, "task"] = "regression"
    with pytest.raises(ValueError, match="rows of target 'y_up' disagree"):
        build_candidates(mixed, {}, {})
    dup = pd.concat([FRAME, FRAME.iloc[[4]]])
    with pytest.raises(ValueError, match="same fold twice"):
        build_candidates(dup, {}, {})


def test_candidates_frame_schema_and_parquet_round_trip(tmp_path):
    frame = candidates_frame(build_candidates(FRAME, {}, {}))
    assert tuple(frame.columns) == CANDIDATE_COLUMNS
    assert frame["symbol"].isna().tolist() == [True, False, True, False]
    assert frame["task"].tolist() == ["regression", "regression", "binary", "binary"]
    path = tmp_path / "c.parquet"
    frame.to_parquet(path, index=False)
    assert pd.read_parquet(path)["sample_size"].tolist() == [2000, 630, 810, 100]
    empty = candidates_frame([])
    assert tuple(empty.columns) == CANDIDATE_COLUMNS and len(empty) == 0
    assert dict(empty.dtypes) == dict(frame.dtypes)
