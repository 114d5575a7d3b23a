"""The detector core's tuning, state, answer per point and constants (see :mod:`.core`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from jobline_analyzer.calibration import Episode, Tail

Transform = Literal["none", "log"]
Direction = Literal["both", "up", "down"]
Evidence = Literal["spike", "shift", "drift"]
EVIDENCE: tuple[Evidence, ...] = ("spike", "shift", "drift")
# What each statistic is evidence of: |spike z|, then the fast, middle and slow EWMA charts.
STATISTICS: tuple[Evidence, ...] = ("spike", "shift", "shift", "drift")

DAY, WEEK = 86400.0, 604800.0
MAX_DAY_BINS, WEEK_BINS = 288, 168
SCORE_DECADES = 8.0  # score 1 = p of 1e-8
AC_RATE = 0.01  # memory of the autocorrelation estimate: about 100 points
CALM = 3.0  # charts below this many null spreads teach the autocorrelation estimate
GUARD_ALPHA = 0.1  # memory of the effect-size guard: about 10 points
BIAS_ALPHA = 0.1
MEAN_ABS_TO_SD = 1.2533  # sd / mean absolute deviation of a normal


@dataclass(frozen=True, slots=True)
class Config:
    """Tuning of the core; the defaults suit 5-minute series like NAB's."""

    step_seconds: float = 0.0  # sampling interval; 0 estimates it from the first points
    warmup: int = 750  # points before any flag
    init_points: int = 20
    transform: Transform = "none"
    direction: Direction = "both"
    level_half_life: float = 1000.0  # points
    fast_alpha: float = 0.5
    season_gamma: float = 0.25  # weight of a new visit to a seasonal bin
    error_half_life: float = 1000.0  # memory of the scales
    rank_half_life: float = 288.0  # memory of the experts' errors
    clip: float = 3.0
    shift_alpha: float = 0.3
    mid_alpha: float = 0.1  # a half-life of 7 points: a shift too small for the fast chart
    drift_alpha: float = 0.0115  # a half-life of 60 points
    drift_var_rate: float = 1 / 2000  # memory of the drift chart's own spread
    drift_widen: float = 1.0  # how far that spread may widen the chart's null (1: not at all)
    drift_waits_for_week: bool = False  # the drift chart flags only once a week is known
    tail_q: float = 0.02
    tail_rate: float = 0.02  # weight of a new exceedance in the tail's scale
    flag_p: float = 1e-4
    clear: int = 30
    accept_after: int = 200
    min_effect: float = 0.0  # recent mean shift (transformed units) needed to flag


class Point(NamedTuple):
    """One scored point."""

    score: float
    p: float
    flagged: bool
    onset: bool
    evidence: Evidence
    expected: float


QUIET = Point(0.0, 1.0, False, False, "spike", math.nan)


@dataclass(slots=True)
class State:
    """Everything a detector has learnt (saved and restored whole)."""

    n: int = 0
    last_t: float | None = None
    last_x: float | None = None
    step: float = 0.0
    gaps: list[float] = field(default_factory=list)
    init: list[float] = field(default_factory=list)
    level: float = 0.0
    fast: float = 0.0  # fast EWMA of the shift residual: the spike residual's baseline
    daily: list[float | None] = field(default_factory=list)
    weekly: list[float | None] = field(default_factory=list)
    daily_n: list[int] = field(default_factory=list)  # points each bin has learned from
    weekly_n: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=lambda: [0, 0, 0])
    best: int = 0
    offset: float = 0.0
    err: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # experts' mean |bias|
    bias: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # their smoothed errors
    shift_err: float = 0.0  # robust (clipped) mean |shift residual| of the chosen expert
    spike_err: float = 0.0
    quantum: float = math.inf
    m_shift: float = 0.0
    m_mid: float = 0.0
    m_drift: float = 0.0
    m_raw: float = 0.0
    drift_var: float = 0.0  # mean square of the drift chart outside episodes
    drift_armed: bool = False  # with drift_waits_for_week: a week is known, the chart calm
    spike_onset: bool = False  # whether the current episode began with a spike
    ac: list[float] = field(default_factory=lambda: [0.0, 1.0, 0.0])  # lag-1 product, square, last
    tails: list[Tail] = field(default_factory=lambda: [Tail() for _ in STATISTICS])
    episode: Episode = field(default_factory=Episode)
