"""Run-time and queue-wait drift for one job type: a robust local-level ETS model on log values.

Method: ETS(A,N,N) — simple exponential smoothing, i.e. ARIMA(0,1,1) — fitted with statsmodels
on the log of the per-minute median, refitted every `refit_every` points on the last
`history` points, and run between refits as an O(1) recursion. A point is out of line when it
exceeds the one-step upper prediction bound `level + z * sigma`; a finding needs `k` of the
last `n` points out of line, or the mean residual of the last `n_mean` points above
`z_mean * sigma / sqrt(n_mean)` (low-volume types, whose per-minute median is too noisy for the
point rule), and always a ratio of at least `min_ratio` and an excess of `min_excess_seconds`,
so one slow minute, or a queue wait going from 0.2 s to 0.5 s, is not news.

Why this and not STL or SARIMAX: per-minute data with daily seasonality has period 1440; STL
needs two full periods (two days) before its first residual and SARIMAX with s=1440 is far too
slow to fit per job type. Incidents happen over minutes while the daily cycle moves a few
percent an hour, so a local level tracks the season well enough, and a fit of 240 points costs
about 10 ms — once an hour per series. Logs make the model multiplicative (run times are
right-skewed and drift by factors). Sigma is the MAD of the fit's residuals, and the level is
updated with residuals clipped at `clip` sigmas (a Huber filter), so an incident neither widens
the band nor drags the level along at once; a shift that lasts is slowly accepted as normal.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np

from jobline_analyzer.findings import Finding, Severity, duration

DriftKind = Literal["runtime_drift", "queue_wait_drift"]


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Tuning of the drift detector; defaults suit per-minute medians."""

    history: int = 240
    min_fit_points: int = 60
    refit_every: int = 60
    z: float = 3.5
    min_ratio: float = 1.3
    k: int = 3
    n: int = 5
    n_mean: int = 10
    z_mean: float = 5.0
    min_excess_seconds: float = 0.0
    min_count: int = 0
    clip: float = 1.5
    min_sigma: float = 0.02
    floor_seconds: float = 0.001
    clear_after_minutes: int = 10


# A minute's median queue wait from one or two jobs is one job's luck (a single job that
# waited behind another); it only counts as out of line with this many starts behind it.
QUEUE_MIN_COUNT = 5


def default_config(kind: DriftKind) -> DriftConfig:
    """Queue waits are spiky (a short backlog doubles them), so demand a larger, real change,
    seen in enough jobs."""
    if kind == "queue_wait_drift":
        return DriftConfig(
            min_ratio=2.0, min_excess_seconds=5.0, n_mean=0, min_count=QUEUE_MIN_COUNT
        )
    return DriftConfig()


@dataclass(frozen=True, slots=True)
class _Fit:
    alpha: float
    sigma: float
    level: float


def fit_local_level(values: list[float], min_sigma: float) -> _Fit:
    """Fit ETS(A,N,N) and return its smoothing weight, a robust sigma and the last level."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = np.asarray(values, dtype=float)
    if float(np.ptp(y)) == 0.0:
        # A constant series has nothing to fit (and the optimiser would warn).
        return _Fit(alpha=0.1, sigma=min_sigma, level=float(y[-1]))
    with warnings.catch_warnings():
        # The optimiser may report ConvergenceWarning / RuntimeWarning on short or flat
        # histories; the estimate is still usable and the next refit corrects it.
        warnings.simplefilter("ignore")
        result = ETSModel(y, error="add", trend=None).fit(disp=False)
    alpha = float(np.clip(result.params[0], 0.01, 0.99))
    resid = np.asarray(result.resid, dtype=float)
    mad = float(np.median(np.abs(resid - np.median(resid))))
    return _Fit(alpha=alpha, sigma=max(1.4826 * mad, min_sigma), level=float(result.level[-1]))


class DriftDetector:
    """Streaming detector of upward drift in a per-minute latency (run time or queue wait)."""

    def __init__(
        self,
        tenant: str,
        job_type: str,
        kind: DriftKind = "runtime_drift",
        config: DriftConfig | None = None,
    ) -> None:
        self.tenant = tenant
        self.job_type = job_type
        self.kind: DriftKind = kind
        self.config = config or default_config(kind)
        self._history: list[float] = []
        self._alpha = 0.1
        self._sigma = self.config.min_sigma
        self._level: float | None = None
        self._since_fit = 0
        self._recent: list[tuple[datetime, bool, float]] = []
        self._active = False
        self._quiet = 0

    def update(
        self, timestamp: datetime, seconds: float | None, count: int | None = None
    ) -> Finding | None:
        """Add one minute's median (seconds; None when nothing ran); return a finding on onset.

        ``count`` is how many observations the median summarises; a minute with fewer than
        ``min_count`` still moves the level but is never out of line.
        """
        cfg = self.config
        if seconds is None or not math.isfinite(seconds):
            return None
        y = math.log(max(seconds, cfg.floor_seconds))
        finding: Finding | None = None
        if self._level is not None:
            finding = self._judge(timestamp, y, count)
            resid = y - self._level
            limit = cfg.clip * self._sigma
            self._level += self._alpha * min(max(resid, -limit), limit)
        self._history.append(y)
        del self._history[: -cfg.history]
        self._since_fit += 1
        due = self._level is None and len(self._history) >= cfg.min_fit_points
        if due or (self._level is not None and self._since_fit >= cfg.refit_every):
            self._refit()
        return finding

    def _refit(self) -> None:
        fit = fit_local_level(self._history, self.config.min_sigma)
        self._alpha, self._sigma = fit.alpha, fit.sigma
        if self._level is None:
            self._level = fit.level
        self._since_fit = 0

    def _judge(self, timestamp: datetime, y: float, count: int | None) -> Finding | None:
        cfg = self.config
        assert self._level is not None
        level = self._level
        resid = y - level
        z = resid / self._sigma
        excess = math.exp(y) - math.exp(level) >= cfg.min_excess_seconds
        big = resid >= math.log(cfg.min_ratio) and excess
        enough = count is None or count >= cfg.min_count
        out = z > cfg.z and big and enough
        self._recent.append((timestamp, out, resid))
        del self._recent[: -max(cfg.n, cfg.n_mean)]
        hits = [t for t, o, _ in self._recent[-cfg.n :] if o]
        # n_mean = 0 turns the mean rule off (queue waits: backlogs make runs of high values).
        tail = self._recent[-cfg.n_mean :] if cfg.n_mean else []
        mean = sum(r for _, _, r in tail) / len(tail) if tail else 0.0
        shifted = (
            bool(tail)
            and len(tail) == cfg.n_mean
            and mean * math.sqrt(cfg.n_mean) / self._sigma > cfg.z_mean
            and mean >= math.log(cfg.min_ratio)
            and big
        )
        if not (out or shifted):
            if self._active:
                self._quiet += 1
                if self._quiet >= cfg.clear_after_minutes:
                    self._active, self._quiet = False, 0
            return None
        self._quiet = 0
        if self._active or (len(hits) < cfg.k and not shifted):
            return None
        if shifted and len(hits) < cfg.k:
            hits = [tail[0][0]]
        self._active = True
        expected = math.exp(level)
        observed = math.exp(y)
        bound = math.exp(level + cfg.z * self._sigma)
        ratio = observed / expected
        severity: Severity = "critical" if ratio >= 2.0 else "warning"
        return Finding(
            tenant=self.tenant,
            job_type=self.job_type,
            kind=self.kind,
            severity=severity,
            window_start=hits[0],
            window_end=timestamp,
            baseline=expected,
            observed=observed,
            score=1.0 - cfg.z / z,
            explanation=self._explain(observed, expected, bound),
        )

    def _explain(self, observed: float, expected: float, bound: float) -> str:
        ratio = observed / expected
        if self.kind == "runtime_drift":
            return (
                f"{self.job_type} runs now take {duration(observed)} (median), {ratio:.1f}x the "
                f"{duration(expected)} expected (one-minute upper bound {duration(bound)}); "
                f"check its dependencies' latency, input sizes and recent deploys."
            )
        return (
            f"{self.job_type} jobs now wait {duration(observed)} in the queue (median), "
            f"{ratio:.1f}x the {duration(expected)} expected (one-minute upper bound "
            f"{duration(bound)}); add worker capacity for its queue or look for stuck or "
            f"slow workers."
        )

    @property
    def active(self) -> bool:
        """Whether a drift is in progress (already reported)."""
        return self._active

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint."""
        return {
            "tenant": self.tenant,
            "job_type": self.job_type,
            "kind": self.kind,
            "config": asdict(self.config),
            "history": list(self._history),
            "alpha": self._alpha,
            "sigma": self._sigma,
            "level": self._level,
            "since_fit": self._since_fit,
            "recent": [[t.isoformat(), o, r] for t, o, r in self._recent],
            "active": self._active,
            "quiet": self._quiet,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DriftDetector:
        """Restore a detector from `to_state` output."""
        det = cls(state["tenant"], state["job_type"], state["kind"], DriftConfig(**state["config"]))
        det._history = [float(v) for v in state["history"]]
        det._alpha = float(state["alpha"])
        det._sigma = float(state["sigma"])
        det._level = None if state["level"] is None else float(state["level"])
        det._since_fit = int(state["since_fit"])
        det._recent = [
            (datetime.fromisoformat(t), bool(o), float(r)) for t, o, r in state["recent"]
        ]
        det._active = bool(state["active"])
        det._quiet = int(state["quiet"])
        return det
