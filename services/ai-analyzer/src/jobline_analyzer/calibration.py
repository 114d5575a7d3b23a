"""Calibration and episodes, shared by every detector (pure).

- `Tail`: the tail of one statistic on one series, fitted online — peaks over a running
  (1 - q) quantile with an exponential tail (SPOT, Siffer et al., 2017, with the generalised
  Pareto shape fixed at 0), floored at Gaussian values so a thin history never makes a
  small excursion look extreme. Its `p` is what makes a threshold mean the same everywhere.
- `Episode`: an anomaly in progress — flagged at onset, flagged again only on a far stronger
  point (no cooldown that hides it), cleared after enough quiet points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

T_MIN, SIGMA_MIN = 2.0, 0.4  # Gaussian-like floors of the tail: never trust a thinner one
ESCALATE = 1e-3  # a point flags again inside an episode when its p is this much smaller


@dataclass(slots=True)
class Tail:
    """Exponential tail of one statistic above its running (1 - q) quantile."""

    t: float = 2.33
    sigma: float = 0.5
    seen: int = 0  # exceedances learnt from

    def p(self, x: float, q: float) -> float:
        """Tail probability of ``x`` (q at the threshold, 1 far below it)."""
        return min(1.0, q * math.exp((self.t - x) / self.sigma))

    def learn(self, x: float, q: float, rate: float, weight: float, young: int = 0) -> None:
        """Robbins-Monro step of the quantile; a winsorised excess updates the scale.

        For its first ``young`` exceedances the scale is their running mean (rate 1/k), not
        a slow average: a type whose normal bursts are far above the Gaussian prior learns
        so from its first bursts instead of crying wolf for two days.
        """
        above = x > self.t
        if above:
            excess = min(x - self.t, 3.0 * self.sigma)
            if weight > 0 and self.seen < young:
                self.seen += 1
                rate = max(rate, 1.0 / self.seen)
            self.sigma = max(SIGMA_MIN, self.sigma + weight * rate * (excess - self.sigma))
        self.t = max(T_MIN, self.t + weight * 0.02 * self.sigma * (above - q))


class Event(NamedTuple):
    """What one point means for its episode."""

    onset: bool
    escalation: bool


@dataclass(slots=True)
class Episode:
    """An anomaly in progress: flagged once, re-flagged only when far stronger."""

    active: bool = False
    quiet: int = 0
    length: int = 0
    peak: float = 1.0

    def step(self, p: float, flag_p: float, clear: int, spike: bool = True) -> Event:
        """Advance one point with its p-value; only a spike may escalate (charts grow)."""
        if not self.active:
            if p < flag_p:
                self.active, self.quiet, self.length, self.peak = True, 0, 0, p
                return Event(True, False)
            return Event(False, False)
        self.length += 1
        self.quiet = 0 if p < flag_p else self.quiet + 1
        if self.quiet >= clear:
            self.active = False
        elif spike and p < self.peak * ESCALATE:
            self.peak = p
            return Event(False, True)
        return Event(False, False)
