"""Throughput drops and stalls for one job type: completions against what arrivals predict.

Method: a decayed baseline of the completion/arrival ratio `r` (about 1 in steady state)
predicts `r * arrivals` completions over the last `window_minutes`. A drop is a Poisson lower
tail below `alpha_drop` with completions under `max_fraction` of that prediction. A stall is a
run of minutes with zero completions while work keeps arriving, long enough that zero would be
implausible (`exp(-r * arrivals_during_run) < alpha_stall`): a busy type stalls within a
couple of minutes, a quiet one needs longer, and a type with no arrivals never stalls.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from scipy.stats import poisson

from jobline_analyzer.decay import decay_factor, iso, ts
from jobline_analyzer.findings import Finding, percent


@dataclass(frozen=True, slots=True)
class ThroughputConfig:
    """Tuning of the throughput detector; defaults suit per-minute rollups."""

    window_minutes: int = 10
    half_life_minutes: float = 120.0
    alpha_drop: float = 1e-4
    max_fraction: float = 0.6
    alpha_stall: float = 1e-3
    min_stall_minutes: int = 3
    min_baseline_arrivals: float = 100.0
    clear_after_minutes: int = 10


class ThroughputDetector:
    """Streaming detector; feed it one `update` per minute, in time order."""

    def __init__(self, tenant: str, job_type: str, config: ThroughputConfig | None = None) -> None:
        self.tenant = tenant
        self.job_type = job_type
        self.config = config or ThroughputConfig()
        self._window: list[tuple[datetime, int, int]] = []
        self._base_arrivals = 0.0
        self._base_done = 0.0
        self._last: datetime | None = None
        self._stall_start: datetime | None = None
        self._stall_arrivals = 0
        self._drop_active = False
        self._stall_active = False
        self._quiet = 0

    def update(self, timestamp: datetime, arrivals: int, completions: int) -> Finding | None:
        """Add one minute: jobs that became runnable and attempts that finished."""
        cfg = self.config
        factor = decay_factor(self._last, timestamp, cfg.half_life_minutes)
        self._base_arrivals *= factor
        self._base_done *= factor
        self._last = timestamp
        self._window.append((timestamp, arrivals, completions))
        horizon = timestamp - timedelta(minutes=cfg.window_minutes)
        incident = self._drop_active or self._stall_active
        while self._window and self._window[0][0] <= horizon:
            _, came, done = self._window.pop(0)
            if not incident:  # an incident must not teach the baseline that slow is normal
                self._base_arrivals += came
                self._base_done += done

        if completions == 0 and arrivals > 0:
            self._stall_start = self._stall_start or timestamp
            self._stall_arrivals += arrivals
        elif completions > 0:
            self._stall_start, self._stall_arrivals = None, 0

        if self._base_arrivals < cfg.min_baseline_arrivals:
            return None
        ratio = min(self._base_done / self._base_arrivals, 1.5)
        stall = self._check_stall(timestamp, ratio)
        if stall is not None:
            return stall
        return self._check_drop(timestamp, ratio)

    def _check_stall(self, timestamp: datetime, ratio: float) -> Finding | None:
        cfg = self.config
        start = self._stall_start
        if start is None:
            if self._stall_active:
                self._stall_active = False
            return None
        minutes = (timestamp - start).total_seconds() / 60 + 1
        expected = ratio * self._stall_arrivals
        if self._stall_active or minutes < cfg.min_stall_minutes:
            return None
        if math.exp(-expected) >= cfg.alpha_stall:
            return None
        self._stall_active = True
        return Finding(
            tenant=self.tenant,
            job_type=self.job_type,
            kind="stall",
            severity="critical",
            window_start=start,
            window_end=timestamp,
            baseline=expected,
            observed=0.0,
            score=1.0,
            explanation=(
                f"{self.job_type} has finished nothing for {minutes:.0f} min while "
                f"{self._stall_arrivals} jobs arrived (about {expected:.0f} would normally "
                f"have finished); check that its workers are running and consuming its queue."
            ),
        )

    def _check_drop(self, timestamp: datetime, ratio: float) -> Finding | None:
        cfg = self.config
        arrivals = sum(a for _, a, _ in self._window)
        done = sum(c for _, _, c in self._window)
        expected = ratio * arrivals
        low = expected > 0 and done < cfg.max_fraction * expected
        p = float(poisson.cdf(done, expected)) if low else 1.0
        if p >= cfg.alpha_drop:
            if self._drop_active:
                self._quiet += 1
                if self._quiet >= cfg.clear_after_minutes:
                    self._drop_active, self._quiet = False, 0
            return None
        self._quiet = 0
        if self._drop_active or self._stall_active:
            return None
        self._drop_active = True
        return Finding(
            tenant=self.tenant,
            job_type=self.job_type,
            kind="throughput_drop",
            severity="warning",
            window_start=self._window[0][0],
            window_end=timestamp,
            baseline=expected,
            observed=float(done),
            score=min(1.0, -math.log10(max(p, 1e-300)) / 10),
            explanation=(
                f"{self.job_type} finished {done} jobs in the last {cfg.window_minutes} min "
                f"while {arrivals} arrived; about {expected:.0f} were expected "
                f"({percent(done / expected)} of normal), so its backlog is growing; check "
                f"worker capacity and slow or stuck handlers."
            ),
        )

    @property
    def active(self) -> bool:
        """Whether a drop or stall is in progress (already reported)."""
        return self._drop_active or self._stall_active

    @property
    def stall_active(self) -> bool:
        """Whether a stall is in progress (already reported)."""
        return self._stall_active

    @property
    def drop_active(self) -> bool:
        """Whether a throughput drop is in progress (already reported)."""
        return self._drop_active

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint."""
        return {
            "tenant": self.tenant,
            "job_type": self.job_type,
            "config": asdict(self.config),
            "window": [[t.isoformat(), a, c] for t, a, c in self._window],
            "base_arrivals": self._base_arrivals,
            "base_done": self._base_done,
            "last": iso(self._last),
            "stall_start": iso(self._stall_start),
            "stall_arrivals": self._stall_arrivals,
            "drop_active": self._drop_active,
            "stall_active": self._stall_active,
            "quiet": self._quiet,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ThroughputDetector:
        """Restore a detector from `to_state` output."""
        det = cls(state["tenant"], state["job_type"], ThroughputConfig(**state["config"]))
        det._window = [(datetime.fromisoformat(t), int(a), int(c)) for t, a, c in state["window"]]
        det._base_arrivals = float(state["base_arrivals"])
        det._base_done = float(state["base_done"])
        det._last = ts(state["last"])
        det._stall_start = ts(state["stall_start"])
        det._stall_arrivals = int(state["stall_arrivals"])
        det._drop_active = bool(state["drop_active"])
        det._stall_active = bool(state["stall_active"])
        det._quiet = int(state["quiet"])
        return det
