"""Exponentially decayed baselines: old minutes count for less, with a stated half-life."""

from __future__ import annotations

from datetime import datetime


def decay_factor(previous: datetime | None, now: datetime, half_life_minutes: float) -> float:
    """Weight that counts accumulated up to `previous` keep at `now`.

    A half-life rather than a fixed window keeps the baseline O(1) in state and lets it follow
    slow daily seasonality while ignoring a few minutes of incident.
    """
    if previous is None:
        return 1.0
    elapsed = max((now - previous).total_seconds() / 60.0, 0.0)
    return float(0.5 ** (elapsed / half_life_minutes))


def ts(value: str | None) -> datetime | None:
    """Parse an ISO timestamp from detector state (None stays None)."""
    return None if value is None else datetime.fromisoformat(value)


def iso(value: datetime | None) -> str | None:
    """Format a timestamp for detector state (None stays None)."""
    return None if value is None else value.isoformat()
