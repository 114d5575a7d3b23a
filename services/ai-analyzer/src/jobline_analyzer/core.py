"""The detector core: a seasonal, robust, calibrated streaming scorer (pure: no I/O, no clock).

Per point, in O(1) time and bounded state:

1. **Baseline** — robust Holt-Winters (Gelper, Fried & Croux, 2010): a slow level plus a
   daily and a weekly profile indexed by time of day and of week (irregular sampling and gaps
   are fine), learnt by backfitting from residuals clipped at ``clip`` scales, so an incident
   barely moves them; a bin averages its first visits before smoothing with
   ``season_gamma``. Three experts — level, + daily, + daily + weekly — are ranked by the
   size of their smoothed error (their bias, not the noise all share); seasonality is thus
   chosen online, and a profile competes only once it has seen a full period.
2. **Residuals** — a spike residual against a fast deviation (it whitens slow wander) and a
   shift residual against the slow level. Scales are robust mean absolute errors floored at
   half the series' quantum (its smallest step), so a quantised or flat series never yields
   z = 22; a point may carry a weight (a median of more jobs is less noisy).
3. **Evidence** — |spike z| and three EWMA charts (Roberts, 1959) of the shift z: fast for
   level shifts, middle for shifts too small for the fast one, slow for drifts. The charts'
   null spread is widened by the lag-1 autocorrelation of the residuals (learnt only while
   the charts are calm, or a level shift would raise it and hide itself), so a wandering
   series is not read as drifting; optionally (``drift_widen``) the slow chart's own spread
   widens it further, for structure the seasonal profiles have not learnt yet, and
   (``drift_waits_for_week``) it flags only once a week is known: a first weekend is a drift.
4. **Calibration** — each statistic's tail on *this* series (`calibration.Tail`); p is the
   Bonferroni minimum over the four; ``score = -log10(p) / 8`` in [0, 1], so a threshold
   means the same on every series (0.5 is p = 1e-4).
5. **Episodes** — `calibration.Episode` flags the onset and, once, a far stronger spike; while
   young, an episode teaches only the seasonal profiles (not if it began as a spike); every
   ``accept_after`` points (two days before the weekly profile is trusted: it may be the
   first weekend) its mean level is taken as the new normal. A flag also needs
   ``min_effect`` (a practical size).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from jobline_analyzer.calibration import Episode, Event, Tail
from jobline_analyzer.coreconfig import (
    AC_RATE,
    BIAS_ALPHA,
    CALM,
    DAY,
    GUARD_ALPHA,
    MAX_DAY_BINS,
    MEAN_ABS_TO_SD,
    QUIET,
    SCORE_DECADES,
    STATISTICS,
    WEEK,
    WEEK_BINS,
    Config,
    Point,
    State,
)

__all__ = ["Config", "Detector", "Point"]


class Detector:
    """Streaming scorer of one series: ``update(seconds, value)`` in time order."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.s = State()
        cfg = self.config
        self._every = tuple(
            round(1 / a) for a in (1.0, cfg.shift_alpha, cfg.mid_alpha, cfg.drift_alpha)
        )

    @property
    def active(self) -> bool:
        """Whether an anomaly episode is in progress."""
        return self.s.episode.active

    def _x(self, y: float) -> float:
        return math.log(max(y, 1e-3)) if self.config.transform == "log" else y

    def _y(self, x: float) -> float:
        return math.exp(x) if self.config.transform == "log" else x

    def _dir(self, z: float) -> float:
        d = self.config.direction
        return abs(z) if d == "both" else max(z, 0.0) if d == "up" else max(-z, 0.0)

    def update(self, t: float, y: float, weight: float = 1.0) -> Point:
        """Score one point at ``t`` seconds (any epoch) and learn from it.

        ``weight`` is the point's precision relative to a typical one (a median of 4n jobs
        has weight 4: half the noise); residuals are read against ``scale / sqrt(weight)``.
        """
        s, cfg = self.s, self.config
        if not math.isfinite(y) or not math.isfinite(t):
            return QUIET
        x = self._x(y)
        if s.last_t is not None and t > s.last_t and len(s.gaps) < cfg.init_points:
            s.gaps.append(t - s.last_t)
        previous = s.last_x
        s.last_t, s.last_x = t, x
        s.n += 1
        point = QUIET
        if len(s.init) < cfg.init_points:
            s.init.append(x)
            if len(s.init) == cfg.init_points:
                self._start()
        else:
            point = self._score(t, x, math.sqrt(min(max(weight, 0.05), 20.0)))
        # The quantum learns after the point is scored: a flat series' first jump is news,
        # not its own unit.
        if previous is not None and abs(x - previous) > 1e-9 * max(1.0, abs(x)):
            s.quantum = min(s.quantum, abs(x - previous))
        return point

    def _start(self) -> None:
        s, cfg = self.s, self.config
        values = sorted(s.init)
        s.level = values[len(values) // 2]
        spread = sum(abs(v - s.level) for v in values) / len(values)
        s.err = [spread] * 3
        s.shift_err = s.spike_err = spread
        gaps = sorted(s.gaps)
        s.step = cfg.step_seconds or (gaps[len(gaps) // 2] if gaps else 0.0)
        if 0 < s.step <= DAY / 8:
            s.daily = [None] * min(MAX_DAY_BINS, max(8, round(DAY / s.step)))
            s.daily_n = [0] * len(s.daily)
        if 0 < s.step <= 3600:
            s.weekly = [None] * WEEK_BINS
            s.weekly_n = [0] * WEEK_BINS

    def _period(self, k: int) -> float:
        """Points in expert k's period (0 for the plain level)."""
        step = self.s.step
        return 0.0 if not k or not step else (DAY if k == 1 else WEEK) / step

    def _floor(self) -> float:
        s = self.s
        quantum = 0.5 * s.quantum if math.isfinite(s.quantum) else 0.0
        return max(quantum, 1e-3 * abs(s.level), 1e-9)

    def _score(self, t: float, x: float, root: float) -> Point:
        s, cfg = self.s, self.config
        nd, nw = len(s.daily), len(s.weekly)
        bd = int(t % DAY / DAY * nd) if nd else 0
        bw = int(t % WEEK / WEEK * nw) if nw else 0
        sd = s.daily[bd] if nd else None
        sw = s.weekly[bw] if nw else None
        offsets = [0.0, sd, None if sd is None or sw is None else sd + sw]
        ok = [0] + [k for k in (1, 2) if offsets[k] is not None and self._trusted(k)]
        best = min(ok, key=lambda k: s.err[k] * (1.0 + 0.05 * k))
        season = offsets[best] or 0.0
        if best != s.best:
            # Another expert takes over: move the fast deviation with it, so the switch is
            # not read as a spike.
            s.fast += s.offset - season
            s.best = best
        s.offset = season
        floor = self._floor()
        scale = max(s.shift_err * MEAN_ABS_TO_SD / root, floor)
        spike_scale = max(s.spike_err * MEAN_ABS_TO_SD / root, floor)
        r_shift = x - s.level - season
        r_spike = r_shift - s.fast
        z_shift, z_spike = r_shift / scale, r_spike / spike_scale
        zc = _clip(z_shift, 6.0)
        s.m_shift += cfg.shift_alpha * (zc - s.m_shift)
        s.m_mid += cfg.mid_alpha * (zc - s.m_mid)
        s.m_drift += cfg.drift_alpha * (zc - s.m_drift)
        s.m_raw += GUARD_ALPHA * (zc * scale - s.m_raw)
        phi = min(0.99, max(0.0, s.ac[0] / s.ac[1])) if s.ac[1] > 0 else 0.0
        stats = (
            self._dir(z_spike),
            self._dir(s.m_shift / _ewma_sd(cfg.shift_alpha, phi)),
            self._dir(s.m_mid / _ewma_sd(cfg.mid_alpha, phi)),
            self._dir(s.m_drift / self._drift_sd(phi)),
        )
        ps = self._p_values(stats)
        worst = min(range(len(ps)), key=ps.__getitem__)
        p = min(1.0, len(ps) * ps[worst])
        score = min(1.0, -math.log10(max(p, 1e-300)) / SCORE_DECADES)
        expected = self._y(s.level + season)

        event = Event(False, False)
        if s.n > cfg.warmup:
            strong = self._dir(s.m_raw) >= cfg.min_effect
            event = s.episode.step(p if strong else 1.0, cfg.flag_p, cfg.clear, worst == 0)
            if event.onset:
                s.spike_onset = worst == 0
        ep = s.episode
        # The tails learn once the scales and the autocorrelation have settled, and little
        # from inside an episode.
        # A chart learns once per its memory (about 1/alpha points): its values in between are
        # near copies, and a slow drift must not teach it, point by point, that drift is normal.
        calm = max(stats[1:]) < CALM
        weight = 0.0 if s.n < 15 * cfg.init_points else 0.1 if ep.active else 1.0
        for k, (tail, v) in enumerate(zip(s.tails, stats, strict=True)):
            if s.n % self._every[k] == 0:
                tail.learn(v, cfg.tail_q, cfg.tail_rate, weight)
        self._rank(x, offsets)
        accept_after = self._accept_after()
        if ep.active and ep.length and ep.length % accept_after == 0:
            self._accept(scale)
        else:
            # Inside a young episode only the seasonal profiles learn (clipped, so an
            # incident barely moves them): the weekend must be learnt even while it surprises.
            self._learn(
                x,
                offsets,
                bins=(bd, bw),
                residuals=(r_shift, r_spike),
                scales=(scale, spike_scale),
                root=root,
                frozen=ep.active and ep.length <= accept_after,
                calm=calm,
            )
        flagged = event.onset or event.escalation
        return Point(score, p, flagged, event.onset, STATISTICS[worst], expected)

    def _accept_after(self) -> int:
        # Until the weekly profile has seen a week, a long episode may be the first weekend:
        # taken as a new level it would be undone on Monday (another flag) and would teach
        # Sunday's bins the wrong offset for weeks. Wait for two days before accepting it.
        s, after = self.s, self.config.accept_after
        if s.weekly and s.step and not self._trusted(2):
            return max(after, round(2 * DAY / s.step))
        return after

    def _p_values(self, stats: tuple[float, ...]) -> list[float]:
        s, cfg = self.s, self.config
        ps = [tail.p(v, cfg.tail_q) for tail, v in zip(s.tails, stats, strict=True)]
        if cfg.drift_waits_for_week and s.weekly and not s.drift_armed:
            ps[-1] = self._arm_drift(stats[-1])
        return ps

    def _arm_drift(self, drift: float) -> float:
        # A slow drift cannot be told from a weekly pattern before a week has been seen: the
        # first Saturday's fall and Monday's return read as drifts. The faster charts and
        # spikes still flag (a level shift in the first week is still found). Armed only once
        # the chart is calm, or what it gathered meanwhile would flag on arming.
        self.s.drift_armed = self._weekly_known() and drift < CALM
        return 1.0

    def _weekly_known(self) -> bool:
        # The weekly profile is trusted and has seen the day after its first week (Monday's
        # return from a weekend the level had partly followed).
        return self._trusted(2) and self.s.seen[2] > self._period(2) + DAY / self.s.step

    def _drift_sd(self, phi: float) -> float:
        # The AR(1) null spread of the drift chart misses slower correlation (a seasonal
        # profile still settling, a wandering series): the chart's own mean square outside
        # episodes widens it, up to a cap so a series cannot learn to ignore drifts.
        model = _ewma_sd(self.config.drift_alpha, phi)
        return max(model, min(math.sqrt(self.s.drift_var), self.config.drift_widen * model))

    def _rank(self, x: float, offsets: list[float | None]) -> None:
        # Ranked on unclipped errors, even inside an episode: a clipped error could not see
        # that the plain level misses a two-level day by 40 scales every morning.
        s = self.s
        rank = math.log(2) / self.config.rank_half_life
        for k, off in enumerate(offsets):
            if off is None:
                continue
            if k and (not s.seen[k] or (s.seen[k] == int(self._period(k)) and self._wide(k))):
                # A new expert starts as good as the plain level and must earn its place. A
                # wide bin was set from the first points of the very visits it predicted in
                # its first period: those flattering errors are forgotten after it.
                s.err[k] = s.err[0]
            # Ranked on the smoothed error (its bias): per-point noise is the same for every
            # expert and would drown a seasonal swing smaller than the noise.
            s.bias[k] += BIAS_ALPHA * (x - s.level - off - s.bias[k])
            s.err[k] += rank * (abs(s.bias[k]) - s.err[k])
            s.seen[k] += 1

    def _trusted(self, k: int) -> bool:
        # A profile of narrow bins has honest errors from its first predictions (a quarter
        # of a period is enough to rank it); a wide one only after its first period.
        seen, period = self.s.seen[k], self._period(k)
        return seen > period if self._wide(k) else seen > period / 4

    def _wide(self, k: int) -> bool:
        return self._per_bin(k) > 10

    def _per_bin(self, k: int) -> float:
        bins = len(self.s.daily if k == 1 else self.s.weekly)
        return self._period(k) / bins if bins else 0.0

    def _accept(self, scale: float) -> None:
        # The episode has lasted: its mean level is the new normal (a deploy, a migration).
        s = self.s
        s.level += s.m_drift * scale
        s.fast = s.m_shift = s.m_mid = s.m_drift = s.m_raw = 0.0

    def _learn(
        self,
        x: float,
        offsets: list[float | None],
        *,
        bins: tuple[int, int],
        residuals: tuple[float, float],
        scales: tuple[float, float],
        root: float,
        frozen: bool,
        calm: bool,
    ) -> None:
        s, cfg = self.s, self.config
        (bd, bw), (r_shift, r_spike), (scale, spike_scale) = bins, residuals, scales
        c = cfg.clip
        if frozen:
            # A spike is no season: a bin visited for the first time during one would keep it
            # and flag its absence every week after.
            if not s.spike_onset:
                self._learn_season(x, s.level, offsets, bins=(bd, bw), limit=c * scale)
            return
        # Early on the averages are running means (weight 1/n), so the first points' level
        # and scale are not carried for a thousand points.
        warm = 1.0 / s.n
        beta = max(math.log(2) / cfg.error_half_life, warm)
        level = s.level
        s.level += max(math.log(2) / cfg.level_half_life, warm) * _clip(r_shift, c * scale)
        s.fast += cfg.fast_alpha * max(-c * spike_scale, min(c * spike_scale, r_spike))
        s.spike_err += beta * (min(abs(r_spike), c * spike_scale) * root - s.spike_err)
        s.shift_err += beta * (min(abs(r_shift), c * scale) * root - s.shift_err)
        # Lag-1 autocorrelation of the shift z around its slow mean: it widens the charts'
        # null spread, so a series that wanders is not read as drifting.
        # It learns only while the charts are calm: a level shift is persistent too, and would
        # otherwise raise the estimate within tens of points and hide itself.
        zc = _clip(r_shift / scale, c) - s.m_drift
        if calm:
            s.ac[0] += AC_RATE * (zc * s.ac[2] - s.ac[0])
            s.ac[1] += AC_RATE * (zc * zc - s.ac[1])
        s.ac[2] = zc
        if calm:
            s.drift_var += cfg.drift_var_rate * (s.m_drift * s.m_drift - s.drift_var)
        self._learn_season(x, level, offsets, bins=(bd, bw), limit=c * scale)

    def _learn_season(
        self, x: float, level: float, offsets: list[float | None], *, bins: tuple[int, int],
        limit: float,
    ) -> None:  # fmt: skip
        s, (bd, bw) = self.s, bins
        # Backfitting: each profile learns what the other leaves, so the weekend does not drag
        # the daily profile down and Monday does not start wrong.
        sd = offsets[1]
        if s.daily:
            sw = s.weekly[bw] if s.weekly and s.seen[2] > self._period(2) else None
            base = x - level - (sw or 0.0)
            per_bin = self._per_bin(1)
            self._season(s.daily, s.daily_n, bd, base=base, limit=limit, per_bin=per_bin)
        if s.weekly and sd is not None:
            base, per_bin = x - level - sd, self._per_bin(2)
            self._season(s.weekly, s.weekly_n, bw, base=base, limit=limit, per_bin=per_bin)

    def _season(
        self, table: list[float | None], counts: list[int], b: int, *, base: float,
        limit: float, per_bin: float,
    ) -> None:  # fmt: skip
        # A bin's first visit sets it to the mean of its points; visit v then moves it by
        # about max(gamma, 1/v) in all, however many points a visit holds (or a wide bin
        # would chase the noise like a fast level). The 1/v start averages the first visits:
        # the first was learnt against a level and daily profile still settling (after the
        # first weekend, Sunday's bins were otherwise wrong for weeks).
        old, n, width = table[b], counts[b], max(per_bin, 1.0)
        if old is None or n < per_bin:
            table[b] = base if old is None else old + _clip(base - old, limit) / (n + 1)
        else:
            visit = n / width
            weight = max(self.config.season_gamma, 1.0 / (visit + 1.0))
            table[b] = old + weight / width * _clip(base - old, limit)
        if n < width / self.config.season_gamma:
            counts[b] = n + 1

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint (infinity is stored as None)."""
        state = asdict(self.s)
        state["quantum"] = None if math.isinf(self.s.quantum) else self.s.quantum
        return {"config": asdict(self.config), "state": state}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Detector:
        """Restore from :meth:`to_state` output."""
        det = cls(Config(**data["config"]))
        st = dict(data["state"])
        st["quantum"] = math.inf if st["quantum"] is None else float(st["quantum"])
        st["tails"] = [Tail(**t) for t in st["tails"]]
        # A checkpoint from before the middle chart has three tails: the new one starts fresh.
        if len(st["tails"]) < len(STATISTICS):
            st["tails"].insert(2, Tail())
        st["episode"] = Episode(**st["episode"])
        det.s = State(**st)
        return det


def _ewma_sd(alpha: float, phi: float) -> float:
    """Standard deviation of an EWMA of a unit-variance AR(1) with coefficient ``phi``."""
    r = phi * (1 - alpha)
    return math.sqrt(alpha / (2 - alpha) * (1 + r) / (1 - r))


def _clip(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))
