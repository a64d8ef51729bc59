"""The report flags holdout metrics too good to be true, with the limits ranking used."""

from __future__ import annotations

import pandas as pd

from trainpipe.contract.rankings import TooGoodLimits
from trainpipe.report.html import flag_too_good

LIMITS = TooGoodLimits(max_rank_ic=0.15, max_r2=0.05, max_auc=0.65)


def test_holdout_scores_beyond_rankings_limits_are_flagged():
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
