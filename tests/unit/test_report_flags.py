"""The report flags holdout metrics too good to be true, with the limits ranking used, judged on each metric's interval."""

from __future__ import annotations

import pandas as pd

from trainpipe.contract.rankings import TooGoodLimits
from trainpipe.report.evidence import flag_too_good

LIMITS = TooGoodLimits(max_rank_ic=0.15, max_r2=0.05, max_auc=0.65)


def test_metrics_without_intervals_are_judged_on_their_point_value():
    metrics = pd.DataFrame([
        {"job_id": "a", "task": "regression", "rank_ic": 0.04, "auc": None},
        {"job_id": "b", "task": "regression", "rank_ic": -0.31, "auc": None},
        {"job_id": "c", "task": "binary", "rank_ic": 0.2, "auc": 0.58},
        {"job_id": "d", "task": "binary", "rank_ic": 0.5, "auc": 0.21},  # a leak with its sign flipped
    ])
    flags = flag_too_good(metrics, LIMITS).set_index("job_id")["too_good"]
    assert flags["a"] == "" and flags["c"] == ""
    assert "rank IC -0.310" in flags["b"] and "AUC 0.210" in flags["d"]


def test_no_limits_recorded_means_no_column():
    metrics = pd.DataFrame([{"job_id": "a", "task": "regression", "rank_ic": 0.9}])
    assert "too_good" not in flag_too_good(metrics, None).columns


def test_the_flag_scales_with_the_standard_error_not_a_fixed_threshold():
    metrics = pd.DataFrame([
        # A 150-bar holdout of 5-day labels (n_eff 30): rank IC 0.31 is within noise of 0.15. The fixed
        # threshold flagged it as a leak; its interval reaches below the limit, so it is not one.
        {"job_id": "short", "task": "regression", "rank_ic": 0.31, "rank_ic_low": -0.06, "rank_ic_high": 0.68},
        # Ten years of daily bars across 50 symbols: rank IC 0.16 ± 0.004 is beyond 0.15 for certain.
        {"job_id": "long", "task": "regression", "rank_ic": 0.16, "rank_ic_low": 0.156, "rank_ic_high": 0.164},
        {"job_id": "auc", "task": "binary", "auc": 0.31, "auc_low": 0.27, "auc_high": 0.34},
        {"job_id": "auc_short", "task": "binary", "auc": 0.70, "auc_low": 0.55, "auc_high": 0.85},
    ])
    flags = flag_too_good(metrics, LIMITS).set_index("job_id")["too_good"]
    assert flags["short"] == "" and flags["auc_short"] == ""
    assert "rank IC 0.160 (95% interval 0.156 to 0.164) beyond ±0.15" in flags["long"]
    assert "AUC 0.310" in flags["auc"]
