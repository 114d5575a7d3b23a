"""Binomial confidence intervals for small counts (Wilson score interval)."""

from __future__ import annotations

import math

from scipy.stats import norm


def z_for(confidence: float) -> float:
    """Two-sided normal quantile: 0.99 -> 2.576."""
    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(
    successes: float, trials: float, confidence: float = 0.95
) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Chosen over the Wald interval because it stays inside [0, 1] and keeps its coverage at
    small n and near 0 or 1, which is where job failure rates live. Counts may be fractional
    (exponentially decayed baselines); zero trials give the uninformative (0, 1).
    """
    if trials <= 0:
        return 0.0, 1.0
    z = z_for(confidence)
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
