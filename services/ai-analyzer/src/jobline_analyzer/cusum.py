"""A two-sided CUSUM of the detector core's shift z (Page, 1954), whitened first (pure).

The EWMA charts average the shift z; a CUSUM accumulates its excess over a reference ``k``
and so reaches a persistent shift of 2k or more in the fewest points (Lorden's optimality).
Two details make it fit the core:

- **Whitening**: the z of a seasonal residual are autocorrelated (AR(1) with the core's
  ``phi``); summed raw, wander would look like a shift. The chart sums the AR(1) innovations
  ``(z - phi z') / sqrt(1 - phi^2)``, clipped at ``CLIP`` (a Huber CUSUM: one spike cannot
  fill it; a shift keeps adding ``delta * sqrt((1 - phi) / (1 + phi))`` a point).
- **Calibration**: for unit-variance increments the height of a CUSUM has an exponential
  tail, P(S > h) ~ exp(-2k (h + 1.166)) (Siegmund, 1985) — exactly the shape
  `calibration.Tail` fits, so its p means what the other statistics' p mean. `prior` starts
  the tail there; the series itself then corrects it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jobline_analyzer.calibration import Tail

CLIP = 3.0  # innovations beyond this many sd are clipped (a spike is the spike test's job)
SIEGMUND = 1.166  # overshoot correction of the CUSUM's tail (0.583 * 2)
# Each sum decays by this factor a point (a memory of about 20 points): Page's CUSUM never
# forgets, and summed the mild, hours-long misfit of a weekly profile still learning (the
# Monday mornings of weeks 3 and 4) into flags. A level shift fills it within a few points.
LEAK = 0.95


@dataclass(slots=True)
class Cusum:
    """Upper and lower (leaky) sums of whitened shift z above a reference ``k``."""

    up: float = 0.0
    down: float = 0.0
    last: float = 0.0  # the previous z, for the AR(1) innovation
    armed: bool = False  # whether its p counts yet (see `arm`)

    def step(self, z: float, phi: float, k: float, direction: str) -> float:
        """Add one z; returns the height in ``direction`` ("up", "down" or "both")."""
        e = (z - phi * self.last) / math.sqrt(1.0 - phi * phi)
        self.last = z
        e = max(-CLIP, min(CLIP, e))
        self.up = max(0.0, LEAK * self.up + e - k)
        self.down = max(0.0, LEAK * self.down - e - k)
        return (
            self.up
            if direction == "up"
            else self.down
            if direction == "down"
            else max(self.up, self.down)
        )

    def arm(self, age: float, wait: float) -> bool:
        """Whether the chart may flag at ``age`` seconds into the series; sums restart then.

        A first weekend *is* a level shift to a model that has not seen a week, so a series
        with a weekly profile arms the chart only after ``wait``.
        """
        if not self.armed and age >= wait:
            self.armed = True
            self.reset()
            return False
        return self.armed

    def reset(self) -> None:
        """A new level has been accepted: nothing has accumulated against it yet."""
        self.up = self.down = 0.0


def prior(k: float, q: float) -> Tail:
    """The tail a CUSUM of unit-normal increments has: its (1 - q) quantile and scale."""
    scale = 1.0 / (2.0 * k)
    return Tail(t=max(0.0, scale * math.log(1.0 / q) - SIEGMUND), sigma=scale)
