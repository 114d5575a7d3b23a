"""Failure-rate spikes for one job type: the last few minutes against a decayed baseline.

Method: Wilson score intervals on both sides. The current window's failure rate must have a
99% Wilson *lower* bound above a threshold built from the baseline (its 99% Wilson *upper*
bound, a relative factor and an absolute margin), with at least `min_failures` failures.
Wilson is chosen over a beta-binomial model because it is closed-form, needs only two counts
of state, and is honest at small n: 1 failure in 2 runs has a 99% lower bound of 6%, which the
`min_failures` floor and the margin reject, while 17 of 50 is flagged at once. Bounding the
baseline from above covers its own uncertainty for a young or low-volume job type, which is
the main thing a beta-binomial would add here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from jobline_analyzer.decay import decay_factor, iso, ts
from jobline_analyzer.findings import Finding, Severity, percent
from jobline_analyzer.intervals import wilson_interval


@dataclass(frozen=True, slots=True)
class FailureRateConfig:
    """Tuning of the failure-rate detector; defaults suit per-minute rollups."""

    window_minutes: int = 5
    half_life_minutes: float = 360.0
    confidence: float = 0.99
    min_failures: int = 3
    min_baseline_runs: float = 50.0
    min_ratio: float = 2.0
    min_delta: float = 0.05
    clear_after_minutes: int = 10


class FailureRateDetector:
    """Streaming detector; feed it one `update` per minute rollup, in time order."""

    kind = "failure_rate_spike"

    def __init__(self, tenant: str, job_type: str, config: FailureRateConfig | None = None) -> None:
        self.tenant = tenant
        self.job_type = job_type
        self.config = config or FailureRateConfig()
        self._window: list[tuple[datetime, int, int]] = []
        self._base_ok = 0.0
        self._base_failed = 0.0
        self._last: datetime | None = None
        self._active = False
        self._quiet = 0

    def update(self, timestamp: datetime, successes: int, failures: int) -> Finding | None:
        """Add one minute's finished runs; return a finding when a spike starts."""
        cfg = self.config
        factor = decay_factor(self._last, timestamp, cfg.half_life_minutes)
        self._base_ok *= factor
        self._base_failed *= factor
        self._last = timestamp
        self._window.append((timestamp, successes, failures))
        horizon = timestamp - timedelta(minutes=cfg.window_minutes)
        while self._window and self._window[0][0] <= horizon:
            _, ok, failed = self._window.pop(0)
            # During an incident the baseline stops learning, or a long spike becomes normal.
            if not self._active:
                self._base_ok += ok
                self._base_failed += failed

        failed = sum(f for _, _, f in self._window)
        runs = failed + sum(s for _, s, _ in self._window)
        base_runs = self._base_ok + self._base_failed
        if runs == 0 or base_runs < cfg.min_baseline_runs:
            self._quiet_minute()
            return None
        baseline = self._base_failed / base_runs
        _, base_high = wilson_interval(self._base_failed, base_runs, cfg.confidence)
        threshold = max(base_high, baseline * cfg.min_ratio, baseline + cfg.min_delta)
        low, _ = wilson_interval(failed, runs, cfg.confidence)
        if failed < cfg.min_failures or low <= threshold:
            self._quiet_minute()
            return None
        self._quiet = 0
        if self._active:
            return None
        self._active = True
        observed = failed / runs
        severity: Severity = "critical" if observed >= 0.5 or low >= 5 * threshold else "warning"
        pct = round(cfg.confidence * 100)
        return Finding(
            tenant=self.tenant,
            job_type=self.job_type,
            kind="failure_rate_spike",
            severity=severity,
            window_start=self._window[0][0],
            window_end=timestamp,
            baseline=baseline,
            observed=observed,
            score=1.0 - threshold / low,
            explanation=(
                f"{self.job_type} failed {percent(observed)} of runs ({failed} of {runs}) in the "
                f"last {cfg.window_minutes} min against a {percent(baseline)} baseline "
                f"(Wilson {pct}% lower bound {percent(low)}); check the dependencies it calls "
                f"and recent deploys, and the DLQ for the failing error."
            ),
        )

    def _quiet_minute(self) -> None:
        if self._active:
            self._quiet += 1
            if self._quiet >= self.config.clear_after_minutes:
                self._active = False
                self._quiet = 0

    @property
    def active(self) -> bool:
        """Whether a spike is in progress (already reported)."""
        return self._active

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint."""
        return {
            "tenant": self.tenant,
            "job_type": self.job_type,
            "config": asdict(self.config),
            "window": [[t.isoformat(), s, f] for t, s, f in self._window],
            "base_ok": self._base_ok,
            "base_failed": self._base_failed,
            "last": iso(self._last),
            "active": self._active,
            "quiet": self._quiet,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FailureRateDetector:
        """Restore a detector from `to_state` output."""
        det = cls(state["tenant"], state["job_type"], FailureRateConfig(**state["config"]))
        det._window = [(datetime.fromisoformat(t), int(s), int(f)) for t, s, f in state["window"]]
        det._base_ok = float(state["base_ok"])
        det._base_failed = float(state["base_failed"])
        det._last = ts(state["last"])
        det._active = bool(state["active"])
        det._quiet = int(state["quiet"])
        return det
