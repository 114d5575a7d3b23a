"""A new error class surging for one job type.

Method: each error class keeps an exponentially decayed count (half-life a day by default),
which stands for its normal rate. A class is *new* when that count, excluding the current
window, is below `known_below` (never or barely seen). It *surges* when its count in the last
`window_minutes` is at least `min_count` and the Poisson upper tail against its baseline rate
(floored at `floor_per_day`, so "never seen" is not "impossible") is below `alpha`. Known
classes that rise are the failure-rate detector's business, not this one's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from scipy.stats import poisson

from jobline_analyzer.decay import decay_factor, iso, ts
from jobline_analyzer.findings import Finding, Severity


@dataclass(frozen=True, slots=True)
class NewErrorClassConfig:
    """Tuning of the new-error-class detector."""

    window_minutes: int = 10
    half_life_minutes: float = 1440.0
    known_below: float = 3.0
    min_count: int = 5
    alpha: float = 1e-4
    floor_per_day: float = 1.0
    warmup_minutes: int = 60
    warmup_runs: int = 1000  # a type with less history has no "usual" errors yet
    max_classes: int = 500
    clear_after_minutes: int = 30


class NewErrorClassDetector:
    """Streaming detector; feed it each minute's failure counts by error class."""

    def __init__(
        self, tenant: str, job_type: str, config: NewErrorClassConfig | None = None
    ) -> None:
        self.tenant = tenant
        self.job_type = job_type
        self.config = config or NewErrorClassConfig()
        self._window: list[tuple[datetime, dict[str, int]]] = []
        self._known: dict[str, float] = {}
        self._first_seen: dict[str, datetime] = {}
        self._active: dict[str, int] = {}  # class -> quiet minutes since it last surged
        self._started: datetime | None = None
        self._runs = 0
        self._last: datetime | None = None

    def update(
        self, timestamp: datetime, errors: Mapping[str, int], runs: int = 0
    ) -> Finding | None:
        """Add one minute's failures by class and finished runs; a finding for the worst surge."""
        cfg = self.config
        factor = decay_factor(self._last, timestamp, cfg.half_life_minutes)
        if factor != 1.0:
            self._known = {c: n * factor for c, n in self._known.items() if n * factor > 1e-3}
        self._last = timestamp
        self._started = self._started or timestamp
        self._runs += runs
        counts = {c: int(n) for c, n in errors.items() if n > 0}
        for cls in counts:
            self._first_seen.setdefault(cls, timestamp)
        self._window.append((timestamp, counts))
        horizon = timestamp - timedelta(minutes=cfg.window_minutes)
        while self._window and self._window[0][0] <= horizon:
            _, old = self._window.pop(0)
            for cls, n in old.items():
                if cls not in self._active:  # a surge in progress is not yet "normal"
                    self._known[cls] = self._known.get(cls, 0.0) + n
        self._prune()

        in_window: dict[str, int] = {}
        for _, minute in self._window:
            for cls, n in minute.items():
                in_window[cls] = in_window.get(cls, 0) + n
        # Per-minute rate of a decayed count with half-life h is count * ln 2 / h.
        to_rate = math.log(2) / cfg.half_life_minutes
        floor = cfg.floor_per_day / 1440.0
        best: tuple[float, str, int, float] | None = None
        for cls, count in in_window.items():
            known = self._known.get(cls, 0.0)
            expected = max(known * to_rate, floor) * cfg.window_minutes
            p = float(poisson.sf(count - 1, expected))
            surging = known < cfg.known_below and count >= cfg.min_count and p < cfg.alpha
            if surging:
                if cls in self._active:
                    self._active[cls] = 0
                elif best is None or p < best[0]:
                    best = (p, cls, count, expected)
        for cls in list(self._active):
            if in_window.get(cls, 0) < cfg.min_count:
                self._active[cls] += 1
                if self._active[cls] >= cfg.clear_after_minutes:
                    del self._active[cls]

        minutes = (timestamp - self._started).total_seconds() / 60
        warm = minutes >= cfg.warmup_minutes and self._runs >= cfg.warmup_runs
        if best is None or not warm:
            return None
        p, cls, count, expected = best
        self._active[cls] = 0
        first = self._first_seen[cls]
        severity: Severity = "critical" if count >= 10 * cfg.min_count else "warning"
        return Finding(
            tenant=self.tenant,
            job_type=self.job_type,
            kind="new_error_class",
            severity=severity,
            window_start=self._window[0][0],
            window_end=timestamp,
            baseline=expected,
            observed=float(count),
            score=min(1.0, -math.log10(max(p, 1e-300)) / 20),
            explanation=(
                f"{self.job_type} is failing with a new error class, '{cls}', {count} times in "
                f"the last {cfg.window_minutes} min (first seen {first:%Y-%m-%d %H:%M}, about "
                f"{expected:.2f} expected); look at what changed then, and mark it "
                f"non-retryable if retries cannot fix it."
            ),
            error_class=cls,
        )

    def _prune(self) -> None:
        # Bound state: a flood of distinct messages must not grow it without limit.
        limit = self.config.max_classes
        if len(self._known) > limit:
            keep = sorted(self._known, key=self._known.__getitem__, reverse=True)[:limit]
            self._known = {c: self._known[c] for c in keep}
        if len(self._first_seen) > 2 * limit:
            live = set(self._known) | {c for _, m in self._window for c in m}
            self._first_seen = {c: t for c, t in self._first_seen.items() if c in live}

    @property
    def active_classes(self) -> tuple[str, ...]:
        """New error classes whose surge is in progress (already reported)."""
        return tuple(sorted(self._active))

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint."""
        return {
            "tenant": self.tenant,
            "job_type": self.job_type,
            "config": asdict(self.config),
            "window": [[t.isoformat(), dict(m)] for t, m in self._window],
            "known": dict(self._known),
            "first_seen": {c: t.isoformat() for c, t in self._first_seen.items()},
            "active": dict(self._active),
            "started": iso(self._started),
            "runs": self._runs,
            "last": iso(self._last),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NewErrorClassDetector:
        """Restore a detector from `to_state` output."""
        det = cls(state["tenant"], state["job_type"], NewErrorClassConfig(**state["config"]))
        det._window = [
            (datetime.fromisoformat(t), {c: int(n) for c, n in m.items()})
            for t, m in state["window"]
        ]
        det._known = {c: float(n) for c, n in state["known"].items()}
        det._first_seen = {c: datetime.fromisoformat(t) for c, t in state["first_seen"].items()}
        det._active = {c: int(n) for c, n in state["active"].items()}
        det._started = ts(state["started"])
        det._runs = int(state["runs"])
        det._last = ts(state["last"])
        return det
