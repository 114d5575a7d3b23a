"""What attempts' timestamps show about limits: the most running at once, the most started in
any window. Shared by the limit tests and ``make bench-flow``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime


def most_at_once(spans: Iterable[tuple[datetime, datetime]]) -> int:
    """The most spans (start, end) open at one moment; one that ends as another starts does
    not overlap it (a slot handed over)."""
    points = []
    for start, end in spans:
        points += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(points):
        running += step
        peak = max(peak, running)
    return peak


def most_in_window(starts: Sequence[datetime], seconds: float) -> int:
    """The most ``starts`` in any window [t, t + seconds)."""
    ordered = sorted(starts)
    peak = first = 0
    for last, start in enumerate(ordered):
        while (start - ordered[first]).total_seconds() >= seconds:
            first += 1
        peak = max(peak, last - first + 1)
    return peak
