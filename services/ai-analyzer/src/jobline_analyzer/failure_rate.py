"""Failure-rate spikes for one job type: the last few minutes against a decayed baseline.

The evidence is the binomial z of the failures in the last 5 and the last 20 minutes against
the baseline rate. Failures are rarely independent (a flapping dependency fails a few jobs in
a row), so each z is not read against a normal table but calibrated on this job type's own
history with the core's tail (`core.Tail`): a type whose normal bursts reach z = 12 needs far
more to be news. Bursts that are normal for a type are short, so the 20-minute z tells an
incident from them; the 5-minute z finds a spike on a steady type within minutes.
The core's `Episode` reports a spike once, and the baseline stops learning while it lasts.
A finding also needs a practical size: `min_failures` failures, and a rate at least
`min_ratio` times and `min_delta` above the baseline.

A young type's tails have not met its normal bursts yet: for its first two days both windows
must agree (a normal burst is short), and each minute is learnt ten minutes late, once it is
clear it was no incident's start, its first exceedances at a running-mean rate. Without this,
a bursty type was flagged at each of its bursts for two days (66 false findings on seeds 0-9).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from jobline_analyzer.calibration import Episode, Tail
from jobline_analyzer.decay import decay_factor, iso, ts
from jobline_analyzer.findings import Finding, Severity, percent


@dataclass(frozen=True, slots=True)
class FailureRateConfig:
    """Tuning of the failure-rate detector; defaults suit per-minute rollups."""

    window_minutes: int = 5
    long_window_minutes: int = 20
    half_life_minutes: float = 360.0
    min_failures: int = 3
    min_baseline_runs: float = 50.0
    min_ratio: float = 2.0
    min_delta: float = 0.05
    floor_rate: float = 0.002
    tail_q: float = 0.02
    tail_rate: float = 0.02
    flag_p: float = 1e-4
    episode_weight: float = 1.0  # how much the tails learn from inside a spike
    # A young type (its first two days) flags only when the 5- and 20-minute evidence agree:
    # its tails have not met its normal bursts yet, and a burst is short.
    young_minutes: int = 2880
    young_exceedances: int = 50  # the tails' first exceedances are averaged (fast learning)
    learn_delay: int = 10  # minutes before a minute's evidence is learnt (see `_learn`)
    clear_after_minutes: int = 10


class FailureRateDetector:
    """Streaming detector; feed it one `update` per minute rollup, in time order."""

    def __init__(self, tenant: str, job_type: str, config: FailureRateConfig | None = None) -> None:
        self.tenant = tenant
        self.job_type = job_type
        self.config = config or FailureRateConfig()
        self._window: list[tuple[datetime, int, int]] = []
        self._base_ok = 0.0
        self._base_failed = 0.0
        self._last: datetime | None = None
        self._learned: datetime | None = None
        self._tails = (Tail(), Tail())
        self._episode = Episode()
        self._minutes = 0
        self._since_onset = 1 << 30
        self._pending: list[tuple[float, float]] = []

    def update(self, timestamp: datetime, successes: int, failures: int) -> Finding | None:
        """Add one minute's finished runs; return a finding when a spike starts."""
        cfg = self.config
        factor = decay_factor(self._last, timestamp, cfg.half_life_minutes)
        self._base_ok *= factor
        self._base_failed *= factor
        self._last = timestamp
        self._window.append((timestamp, successes, failures))
        recent = timestamp - timedelta(minutes=cfg.window_minutes)
        # A minute joins the baseline once it leaves the short window.
        for t, ok, failed in self._window:
            if t <= recent and (self._learned is None or t > self._learned):
                self._learned = t
                if not self._episode.active:  # or a long spike would become normal
                    self._base_ok += ok
                    self._base_failed += failed
        horizon = timestamp - timedelta(minutes=cfg.long_window_minutes)
        while self._window and self._window[0][0] <= horizon:
            self._window.pop(0)
        short = [(s, f) for t, s, f in self._window if t > recent]
        failed = sum(f for _, f in short)
        runs = failed + sum(s for s, _ in short)
        base_runs = self._base_ok + self._base_failed
        if runs == 0 or base_runs < cfg.min_baseline_runs:
            self._episode.step(1.0, cfg.flag_p, cfg.clear_after_minutes)
            return None
        baseline = self._base_failed / base_runs
        p0 = max(baseline, cfg.floor_rate)
        long_failed = sum(f for _, _, f in self._window)
        long_runs = long_failed + sum(s for _, s, _ in self._window)
        zs = (_z(failed, runs, p0), _z(long_failed, long_runs, p0))
        ps = [t.p(z, cfg.tail_q) for t, z in zip(self._tails, zs, strict=True)]
        self._minutes += 1
        # Young: both windows must agree (see the module's docstring); then Bonferroni.
        p = max(ps) if self._minutes <= cfg.young_minutes else min(1.0, 2 * min(ps))
        z = max(zs)
        observed = failed / runs
        big = (
            failed >= cfg.min_failures
            and observed >= baseline * cfg.min_ratio
            and observed >= baseline + cfg.min_delta
        )
        event = self._episode.step(p if big else 1.0, cfg.flag_p, cfg.clear_after_minutes)
        self._learn(zs, event.onset)
        if not event.onset:
            return None
        severity: Severity = "critical" if observed >= 0.5 or p < 1e-8 else "warning"
        return Finding(
            tenant=self.tenant,
            job_type=self.job_type,
            kind="failure_rate_spike",
            severity=severity,
            window_start=recent + timedelta(minutes=1),
            window_end=timestamp,
            baseline=baseline,
            observed=observed,
            score=min(1.0, -math.log10(max(p, 1e-300)) / 8),
            explanation=(
                f"{self.job_type} failed {percent(observed)} of runs ({failed} of {runs}) in the "
                f"last {cfg.window_minutes} min against a {percent(baseline)} baseline "
                f"(z = {z:.1f}, a tail probability of {p:.0e} for this type's own bursts); "
                f"check the dependencies it calls and recent deploys, and the DLQ for the "
                f"failing error."
            ),
        )

    def _learn(self, zs: tuple[float, float], onset: bool) -> None:
        # A minute's evidence is learnt `learn_delay` minutes late: by then it is known whether
        # it was the start of an incident (learnt little, at the slow rate) or a normal burst
        # that faded unflagged (learnt fully, and fast while the tails are young). Learnt at
        # once, an incident's first minutes taught a young tail that such z are normal, before
        # the 20-minute evidence could agree.
        cfg = self.config
        self._since_onset = 0 if onset else self._since_onset + 1
        self._pending.append(zs)
        if len(self._pending) <= cfg.learn_delay:
            return
        old = self._pending.pop(0)
        quiet = not self._episode.active and self._since_onset > cfg.learn_delay
        weight = 1.0 if quiet else cfg.episode_weight
        young = cfg.young_exceedances if quiet else 0
        for tail, z in zip(self._tails, old, strict=True):
            tail.learn(z, cfg.tail_q, cfg.tail_rate, weight, young)

    @property
    def active(self) -> bool:
        """Whether a spike is in progress (already reported)."""
        return self._episode.active

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
            "learned": iso(self._learned),
            "tails": [asdict(t) for t in self._tails],
            "episode": asdict(self._episode),
            "minutes": self._minutes,
            "since_onset": self._since_onset,
            "pending": [list(z) for z in self._pending],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FailureRateDetector:
        """Restore a detector from `to_state` output."""
        det = cls(state["tenant"], state["job_type"], FailureRateConfig(**state["config"]))
        det._window = [(datetime.fromisoformat(t), int(s), int(f)) for t, s, f in state["window"]]
        det._base_ok = float(state["base_ok"])
        det._base_failed = float(state["base_failed"])
        det._last = ts(state["last"])
        det._learned = ts(state["learned"])
        det._tails = (Tail(**state["tails"][0]), Tail(**state["tails"][1]))
        det._episode = Episode(**state["episode"])
        # A checkpoint from before the young rule: a type that old is no longer young.
        det._minutes = int(state.get("minutes", det.config.young_minutes))
        det._since_onset = int(state.get("since_onset", 1 << 30))
        det._pending = [(float(a), float(b)) for a, b in state.get("pending", [])]
        return det


def _z(failed: int, runs: int, p0: float) -> float:
    """One-sided binomial z of ``failed`` in ``runs`` against the rate ``p0``."""
    return max(0.0, (failed - runs * p0) / math.sqrt(runs * p0 * (1 - p0))) if runs else 0.0
