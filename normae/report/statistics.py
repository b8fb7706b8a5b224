"""Seed statistics for the tables: means with Student-t intervals, paired NoR-MAE minus MAE
differences, binomial standard errors of one evaluation, and the verdict a row earns.

Torch-free (the tables are written on login nodes too); scipy gives the t quantiles.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats  # type: ignore[import-untyped]

CONFIDENCE = 0.95

# The verdicts, in the order a summary lists them.
REPRODUCED = "reproduced"
WITHIN_NOISE = "within noise"
REVERSED = "reversed"
AHEAD = "NoR-MAE ahead"  # the interval lies above 0 where the paper prints no gain (or a gain of 0)
BEHIND = "NoR-MAE behind"
ONE_SEED = "one seed"
VERDICTS = (REPRODUCED, WITHIN_NOISE, REVERSED, AHEAD, BEHIND, ONE_SEED)


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values and its two-sided Student-t interval (None with fewer than two values)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def interval_text(self, digits: int = 3) -> str:
        return "" if self.low is None or self.high is None else f"[{self.low:.{digits}g}, {self.high:.{digits}g}]"


def mean_interval(values: list[float], confidence: float = CONFIDENCE) -> Estimate:
    """The mean of ``values`` with its ``confidence`` Student-t interval: mean ± t(n-1) * s / sqrt(n)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_interval needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, None, None, 1)
    sem = statistics.stdev(values) / math.sqrt(len(values))
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1)) * sem
    return Estimate(mean, mean - half, mean + half, len(values))


def paired_difference(treated: list[float], control: list[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean of the per-seed differences ``treated[i] - control[i]`` (same seed at the same index), with
    its Student-t interval: the paired t-test's interval."""
    if len(treated) != len(control):
        raise ValueError(f"paired values need one per seed on both sides, got {len(treated)} and {len(control)}")
    return mean_interval([a - b for a, b in zip(treated, control)], confidence)


def binomial_se(percent: float, n: int) -> float:
    """Standard error, in percentage points, of an accuracy of ``percent`` % measured on ``n`` images."""
    if n <= 0:
        raise ValueError(f"an accuracy needs at least one evaluation image, got {n}")
    p = min(max(percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def verdict(difference: Estimate, paper_gain: float | None) -> str:
    """``reproduced`` (the interval lies on the side of 0 the paper's gain is on), ``within noise`` (it
    spans 0), ``reversed`` (it lies on the other side), ``one seed`` (no interval). Where the paper's
    gain is missing or 0 an interval clear of 0 reads ``NoR-MAE ahead`` / ``NoR-MAE behind``."""
    if difference.low is None or difference.high is None:
        return ONE_SEED
    if difference.low <= 0 <= difference.high:
        return WITHIN_NOISE
    side = 1 if difference.low > 0 else -1
    if paper_gain is None or math.isnan(paper_gain) or paper_gain == 0:
        return AHEAD if side > 0 else BEHIND
    return REPRODUCED if (paper_gain > 0) == (side > 0) else REVERSED


def gain_sign(gain_ours: float, gain_paper: float | None) -> str:
    """How our gain's sign compares with the paper's: ``tie`` (exactly 0), ``same``, ``opposite``, or
    ``no paper gain``."""
    if gain_ours == 0:
        return "tie"
    if gain_paper is None or math.isnan(gain_paper) or gain_paper == 0:
        return "no paper gain"
    return "same" if (gain_ours > 0) == (gain_paper > 0) else "opposite"
