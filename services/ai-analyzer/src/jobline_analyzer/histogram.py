"""Fixed log-spaced histograms of durations that merge by addition.

Bucket 0 holds everything below 1 ms; bucket i (1..N) holds [1 ms * r^(i-1), 1 ms * r^i) with
r = 10^(1/10) (ten buckets per decade, 26% wide); the last bucket holds everything from
1 ms * r^N (N = 80, so 10^5 s, about 28 hours) up. Fixed edges are what makes per-minute
rollups add up element-wise in SQL, in any order and after a replay, which a t-digest or
reservoir would not. Quantiles interpolate log-linearly inside a bucket, so a median is off by
a few percent at most, well under the 30% change the drift detector needs to see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

PER_DECADE: Final = 10
DECADES: Final = 8
LOWEST_SECONDS: Final = 0.001
SIZE: Final = PER_DECADE * DECADES + 2  # underflow + 80 + overflow


def index(seconds: float) -> int:
    """The bucket of a duration."""
    if not math.isfinite(seconds):
        return SIZE - 1 if seconds > 0 else 0
    if seconds < LOWEST_SECONDS:
        return 0
    i = math.floor(math.log10(seconds / LOWEST_SECONDS) * PER_DECADE) + 1
    return min(i, SIZE - 1)


def lower_edge(i: int) -> float:
    """Smallest duration of bucket ``i`` (0 for the underflow bucket)."""
    if i <= 0:
        return 0.0
    return LOWEST_SECONDS * 10 ** ((i - 1) / PER_DECADE)


def upper_edge(i: int) -> float:
    """Duration where bucket ``i`` ends (the overflow bucket is given one more width)."""
    return LOWEST_SECONDS * 10 ** (i / PER_DECADE)


def empty() -> list[int]:
    """A histogram with no observations."""
    return [0] * SIZE


def add(hist: list[int], seconds: float) -> None:
    """Count one observation in place."""
    hist[index(seconds)] += 1


def merge(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Element-wise sum; an empty sequence stands for an empty histogram."""
    if not a:
        return list(b) if b else empty()
    if not b:
        return list(a)
    return [x + y for x, y in zip(a, b, strict=True)]


def total(hist: Sequence[int]) -> int:
    """Number of observations."""
    return sum(hist)


def quantile(hist: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1), interpolated log-linearly in its bucket; None when empty."""
    n = sum(hist)
    if n == 0:
        return None
    rank = q * n
    seen = 0
    for i, count in enumerate(hist):
        if count == 0:
            continue
        if seen + count >= rank:
            frac = min(max((rank - seen) / count, 0.0), 1.0)
            if i == 0:
                return LOWEST_SECONDS * frac
            low, high = lower_edge(i), upper_edge(i)
            return float(low * (high / low) ** frac)
        seen += count
    return upper_edge(len(hist) - 1)  # pragma: no cover - rank <= n always stops above


def median(hist: Sequence[int]) -> float | None:
    """The median, or None when empty."""
    return quantile(hist, 0.5)
