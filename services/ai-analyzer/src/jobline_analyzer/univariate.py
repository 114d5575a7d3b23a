"""A generic detector for any `timestamp,value` series: robust z-scores on two residuals.

Each point is compared with the last `window` points twice: its level against their median
(scaled by their MAD) and its step from the previous point against the median step (scaled by
the MAD of steps). The anomaly strength is the geometric mean of the two z-scores: a spike or a
level shift is far out on both at its onset, while a slow wander (large level z, ordinary steps)
or ordinary jitter on a trending series (ordinary level z) is not. Medians and MADs make the
baseline robust to the anomalies it has already seen. After a flag, scores are halved for
`cooldown` points so one incident is reported once, as NAB-style scoring rewards.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from jobline_analyzer.findings import Finding, Kind


@dataclass(frozen=True, slots=True)
class UnivariateConfig:
    """Tuning of the generic detector."""

    window: int = 500
    probation: int = 150
    min_points: int = 20
    z_threshold: float = 5.0
    cooldown: int = 30


def robust_z(history: np.ndarray, value: float) -> float:
    """|value - median| over a robust scale: 1.4826 MAD, or the mean absolute deviation."""
    med = float(np.median(history))
    dev = np.abs(history - med)
    scale = 1.4826 * float(np.median(dev))
    if scale <= 0:
        # Mostly-constant series (common in NAB): fall back to the mean absolute deviation,
        # then to a tiny relative scale so a change from a flat line still stands out.
        scale = 1.2533 * float(np.mean(dev)) or max(abs(med) * 1e-6, 1e-9)
    return abs(value - med) / scale


class UnivariateDetector:
    """Streaming scorer: `step` gives a score in [0, 1]; `update` gives a `Finding` on a flag."""

    def __init__(
        self,
        config: UnivariateConfig | None = None,
        tenant: str = "-",
        job_type: str = "-",
        kind: Kind = "runtime_drift",
    ) -> None:
        self.config = config or UnivariateConfig()
        self.tenant = tenant
        self.job_type = job_type
        self.kind: Kind = kind
        self._values: list[float] = []
        self._steps: list[float] = []
        self._seen = 0
        self._cooldown = 0

    def step(self, value: float) -> tuple[float, bool]:
        """Score one point (in time order); return (score, is_anomaly)."""
        cfg = self.config
        if not math.isfinite(value):
            return 0.0, False
        z = 0.0
        if len(self._values) >= cfg.min_points:
            z_level = robust_z(np.asarray(self._values), value)
            z_step = robust_z(np.asarray(self._steps), value - self._values[-1])
            z = math.sqrt(z_level * z_step)
        if self._values:
            self._steps.append(value - self._values[-1])
            del self._steps[: -cfg.window]
        self._values.append(value)
        del self._values[: -cfg.window]
        self._seen += 1
        if self._seen <= cfg.probation:
            return 0.0, False
        score = z * z / (z * z + cfg.z_threshold**2) if math.isfinite(z) else 1.0
        if self._cooldown > 0:
            self._cooldown -= 1
            return score * 0.5, False
        flagged = score >= 0.5
        if flagged:
            self._cooldown = cfg.cooldown
        return score, flagged

    def update(self, timestamp: datetime, value: float) -> Finding | None:
        """Detector interface: a `Finding` when the point is flagged."""
        baseline = float(np.median(self._values)) if self._values else value
        score, flagged = self.step(value)
        if not flagged:
            return None
        return Finding(
            tenant=self.tenant,
            job_type=self.job_type,
            kind=self.kind,
            severity="warning",
            window_start=timestamp,
            window_end=timestamp,
            baseline=baseline,
            observed=value,
            score=score,
            explanation=(
                f"{self.job_type} reads {value:.4g} against a recent median of {baseline:.4g}, "
                f"an outlier in both level and step; check what changed at {timestamp:%H:%M}."
            ),
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint."""
        return {
            "config": asdict(self.config),
            "tenant": self.tenant,
            "job_type": self.job_type,
            "kind": self.kind,
            "values": list(self._values),
            "steps": list(self._steps),
            "seen": self._seen,
            "cooldown": self._cooldown,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UnivariateDetector:
        """Restore a detector from `to_state` output."""
        det = cls(
            UnivariateConfig(**state["config"]), state["tenant"], state["job_type"], state["kind"]
        )
        det._values = [float(v) for v in state["values"]]
        det._steps = [float(v) for v in state["steps"]]
        det._seen = int(state["seen"])
        det._cooldown = int(state["cooldown"])
        return det
