"""Select's cost on large panels: permutation shuffles per holdout size, labels ranked once for every prediction."""

from __future__ import annotations

import numpy as np
import pytest

from trainpipe.stages import metrics
from trainpipe.stages.select import PERMUTATION_REPEATS, PERMUTATION_ROWS, permutation_repeats


@pytest.mark.parametrize(
    "holdout_rows,repeats",
    [
        (1, PERMUTATION_REPEATS),
        (2_500, PERMUTATION_REPEATS),  # the example data's holdout: unchanged
        (PERMUTATION_ROWS // 3, 3),
        (PERMUTATION_ROWS // 3 + 1, 2),
        (PERMUTATION_ROWS // 2, 2),
        (PERMUTATION_ROWS // 2 + 1, 1),
        (25_000, 1),  # the 160,000-row panel's holdout
        (0, PERMUTATION_REPEATS),
    ],
)
def test_permutation_repeats_keep_the_shuffled_rows_within_budget(holdout_rows, repeats):
    assert permutation_repeats(holdout_rows) == repeats


@pytest.mark.parametrize("n", [2, 3, 50])
def test_spearman_against_the_same_labels_is_spearman(n):
    rng = np.random.default_rng(n)
    y = np.round(rng.normal(size=n), 1)  # ties among the labels too
    score = metrics.spearman_against(y)
    for _ in range(3):
        pred = rng.normal(size=n)
        np.testing.assert_equal(score(pred), metrics.spearman(y, pred))
