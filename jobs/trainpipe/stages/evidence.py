"""Evidence of skill when many things are tried: one-sided tests, Benjamini–Hochberg, and the lower bounds that go with them.

Pure; rank gates targets with it and routing gates sides. Why this shape:

* A point estimate above a threshold is what noise gives a third of the time when a run tries dozens of
  targets and symbol sides. So each score is tested one-sided against its threshold (H0: skill ≤
  threshold) with its standard error, which the callers count at the effective size of overlapping labels.
* Benjamini–Hochberg rather than Bonferroni: a run tries targets × (symbols + 1) sides, and Bonferroni
  over hundreds of sides would keep only huge effects. BH keeps the expected share of false discoveries
  among what passes at α, and each bound is reported at the level that matches the step-up rule
  (1 − R·α/m for R passes out of m; Benjamini & Yekutieli's false-coverage rate). A score passes exactly
  when that bound clears its threshold, so the number a user reads and the decision never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# The false-discovery rate of every gate unless the spec says otherwise (evidence.alpha).
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class SkillTest:
    """One score to test against `threshold`: its estimate, standard error and degrees of freedom (None: normal)."""

    estimate: float
    se: float | None
    threshold: float
    df: float | None = None

    def p_value(self) -> float:
        """One-sided p-value of H0 "skill ≤ threshold"; 1 when there is no usable standard error."""
        if self.se is None or not math.isfinite(self.se) or self.se <= 0 or not math.isfinite(self.estimate):
            return 1.0
        z = (self.estimate - self.threshold) / self.se
        return float(stats.t.sf(z, self.df) if self.df is not None and math.isfinite(self.df) else stats.norm.sf(z))

    def lower(self, level: float) -> float | None:
        """The one-sided `level` lower bound of the estimate; None without a standard error."""
        if self.se is None or not math.isfinite(self.se) or self.se <= 0 or not math.isfinite(self.estimate):
            return None
        q = stats.t.ppf(level, self.df) if self.df is not None and math.isfinite(self.df) else stats.norm.ppf(level)
        return float(self.estimate - q * self.se)


@dataclass(frozen=True)
class Verdicts:
    """What a gate decided over `tried` tests: which passed, and the one-sided level every lower bound is quoted at."""

    passed: tuple[bool, ...]
    alpha: float
    level: float

    @property
    def tried(self) -> int:
        return len(self.passed)

    @property
    def count(self) -> int:
        return sum(self.passed)

    def describe(self) -> str:
        return f"{self.count} of {self.tried} pass at a false-discovery rate of {self.alpha:g}; bounds one-sided at {self.level:.2%}"


def benjamini_hochberg(p_values: Sequence[float], alpha: float = DEFAULT_ALPHA) -> Verdicts:
    """Step-up BH over `p_values`: the largest k with p_(k) ≤ k·α/m, and every p at or below p_(k), pass."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return Verdicts((), alpha, 1 - alpha)
    order = np.sort(p)
    below = np.flatnonzero(order <= alpha * np.arange(1, m + 1) / m)
    k = int(below[-1]) + 1 if len(below) else 0
    passed = tuple(bool(v) for v in (p <= order[k - 1] if k else np.zeros(m, dtype=bool)))
    return Verdicts(passed, alpha, 1 - alpha * max(k, 1) / m)


def gate(tests: Sequence[SkillTest], alpha: float = DEFAULT_ALPHA) -> tuple[Verdicts, list[float | None]]:
    """BH over `tests`, and each one's lower bound at the level the verdicts quote (passes ⇔ bound ≥ threshold)."""
    verdicts = benjamini_hochberg([t.p_value() for t in tests], alpha)
    return verdicts, [t.lower(verdicts.level) for t in tests]
