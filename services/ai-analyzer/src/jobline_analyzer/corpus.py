"""The evaluation corpus: labelled series generated from fixed seeds (pure, deterministic).

Two families, both with their incidents labelled:

- **job metrics** (what the live detectors see): a week of per-minute rollups for six job
  types with daily and weekly traffic, a nightly batch (a two-level day), benign deploy steps,
  quantised low-volume medians (taken from the same log histograms as live) and bursty but
  normal failures; incidents: failure bursts, latency steps, slow leaks, stalls, new error
  classes. The last type never has an incident.
- **generic series** (what `jobline-analyzer score` sees, NAB-style `timestamp,value` with
  anomaly windows): a seasonal two-level day with no anomaly, weekly traffic with a dip,
  a quantised near-flat series with one blip, a slow ramp before a failure, spikes, a level
  shift, a long series with an early anomaly, a wandering series with no anomaly, and four
  weeks of multiplicative daily and weekly traffic counts with benign steps and no anomaly.

Seeds below ``HELD_OUT_FROM`` (``TUNING_SEEDS``) may be looked at while tuning; seeds from it
on (``HELD_OUT_SEEDS``, or more of them with ``seeds``) never are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import numpy as np

from jobline_analyzer import histogram
from jobline_analyzer.series import BucketInput

HELD_OUT_FROM = 100  # seeds from here on are held out; below it they may be tuned on


def seeds(count: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The first ``count`` tuning seeds and the first ``count`` held-out seeds (never shared)."""
    if not 1 <= count <= HELD_OUT_FROM:
        raise ValueError(f"between 1 and {HELD_OUT_FROM} seeds per split, not {count}")
    return tuple(range(count)), tuple(range(HELD_OUT_FROM, HELD_OUT_FROM + count))


# The table `make eval-analyzer` prints: three of each (`--seeds` widens both).
TUNING_SEEDS, HELD_OUT_SEEDS = seeds(3)

IncidentKind = Literal["failure_burst", "latency_step", "slow_leak", "stall", "new_error_class"]
INCIDENT_KINDS: tuple[IncidentKind, ...] = get_args(IncidentKind)
WEEK_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
NEW_ERROR = "ConnectionRefusedError: connect to <ip> refused"
DURATIONS: dict[IncidentKind, tuple[int, int]] = {  # minutes, inclusive range
    "failure_burst": (20, 60),
    "latency_step": (60, 180),
    "slow_leak": (180, 360),
    "stall": (10, 40),
    "new_error_class": (20, 60),
}


@dataclass(frozen=True, slots=True)
class Profile:
    """A job type's normal behaviour."""

    name: str
    rate_per_min: float
    runtime_s: float
    failure_rate: float
    errors: tuple[str, ...]
    phase: float = 0.0
    weekend: float = 0.8  # traffic factor on Saturday and Sunday
    batch: bool = False  # nearly all arrivals between 02:00 and 03:00
    bursty: bool = False  # short normal failure bursts a few times a day
    deploys: int = 0  # benign permanent run-time steps of about 10%


PROFILES: tuple[Profile, ...] = (
    Profile("send-email", 30.0, 0.8, 0.02, ("SMTPServerDisconnected: <str>", "TimeoutError"),
            weekend=0.4),
    Profile("resize-image", 10.0, 3.0, 0.01, ("OSError: cannot identify image file <str>",),
            phase=0.1, deploys=2),
    Profile("charge-card", 2.0, 1.5, 0.03, ("CardDeclined: card <n> declined",), phase=0.2),
    Profile("sync-crm", 15.0, 0.5, 0.01, ("HTTPError: <n> from <url>",), phase=0.15,
            bursty=True),
    Profile("nightly-report", 0.3, 20.0, 0.02, ("MemoryError",), batch=True),
    Profile("quiet-type", 8.0, 1.0, 0.02, ("KeyError: <str>",), phase=0.05),
)  # fmt: skip
_PLAN: tuple[tuple[IncidentKind, IncidentKind], ...] = (
    ("failure_burst", "slow_leak"),
    ("stall", "new_error_class"),
    ("latency_step", "failure_burst"),
    ("new_error_class", "stall"),
    ("slow_leak", "latency_step"),
)


@dataclass(frozen=True, slots=True)
class Incident:
    """Ground truth: what went wrong, for which type, from start (inclusive) to end."""

    job_type: str
    kind: IncidentKind
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class JobWeek:
    """Per-minute buckets of every job type, in time order, and the incidents injected."""

    buckets: dict[str, tuple[BucketInput, ...]]
    incidents: tuple[Incident, ...]


def plan_incidents(rng: np.random.Generator, days: int) -> list[Incident]:
    """Two non-overlapping incidents per job type but the last, after the first two days."""
    out: list[Incident] = []
    offset = int(rng.integers(len(_PLAN)))
    span = (days - 2) * 1440 // 2
    for i, p in enumerate(PROFILES[:-1]):
        for j, kind in enumerate(_PLAN[(i + offset) % len(_PLAN)]):
            lo, hi = DURATIONS[kind]
            length = int(rng.integers(lo, hi + 1))
            start = 2 * 1440 + j * span + int(rng.integers(60, span - hi - 60))
            if p.batch and kind in ("failure_burst", "stall", "new_error_class"):
                start = start // 1440 * 1440 + 120  # the batch hour: the only busy time
            t = WEEK_START + timedelta(minutes=start)
            out.append(Incident(p.name, kind, t, t + timedelta(minutes=length)))
    return out


def job_week(seed: int, days: int = 7) -> JobWeek:
    """A week of rollups for every profile; the same seed gives the same week."""
    rng = np.random.default_rng(seed)
    incidents = plan_incidents(rng, days)
    buckets = {p.name: tuple(_job_type(rng, p, days, incidents)) for p in PROFILES}
    return JobWeek(buckets, tuple(incidents))


def _job_type(
    rng: np.random.Generator, p: Profile, days: int, incidents: list[Incident]
) -> list[BucketInput]:
    mine = [i for i in incidents if i.job_type == p.name]
    steps = sorted(int(m) for m in rng.integers(2 * 1440, days * 1440, size=p.deploys))
    step_factors = [float(rng.choice([0.9, 1.1])) for _ in steps]
    backlog, burst_left, out = 0.0, 0, []
    capacity_base = 40.0 if p.batch else 3.0 * 1.6 * p.rate_per_min
    for m in range(days * 1440):
        now = WEEK_START + timedelta(minutes=m)
        active = {i.kind: i for i in mine if i.start <= now < i.end}
        tod = m % 1440
        weekend = p.weekend if (m // 1440) % 7 >= 5 else 1.0
        if p.batch:
            rate = 30.0 if 120 <= tod < 180 else p.rate_per_min
        else:
            rate = p.rate_per_min * (
                1 + 0.6 * math.sin(2 * math.pi * (tod / 1440 - 0.25 + p.phase))
            )
        arrivals = int(rng.poisson(rate * weekend))
        slow = math.prod(f for s, f in zip(steps, step_factors, strict=True) if m >= s)
        if "latency_step" in active:
            slow *= 1.8
        if "slow_leak" in active:
            leak = active["slow_leak"]
            frac = (now - leak.start) / (leak.end - leak.start)
            slow *= 1.0 + 1.5 * frac
        capacity = 0.0 if "stall" in active else capacity_base / slow
        waiting = backlog + arrivals
        done = int(min(waiting, rng.poisson(capacity))) if capacity > 0 else 0
        backlog = waiting - done
        if p.bursty and burst_left == 0 and rng.random() < 1 / 240:
            burst_left = int(rng.integers(3, 9))
        fail_p = 0.15 if burst_left else p.failure_rate
        burst_left = max(burst_left - 1, 0)
        if "failure_burst" in active:
            fail_p = 0.3
        failed = int(rng.binomial(done, fail_p))
        errors: dict[str, int] = {}
        if failed:
            split = rng.multinomial(failed, [1 / len(p.errors)] * len(p.errors))
            errors = {c: int(n) for c, n in zip(p.errors, split, strict=True) if n}
        if "new_error_class" in active and done > failed:
            extra = int(rng.binomial(done - failed, 0.15))
            if extra:
                errors[NEW_ERROR] = extra
                failed += extra
        runtime = wait = None
        if done:
            daily = 1.0 + 0.15 * math.sin(2 * math.pi * (tod / 1440 + p.phase))
            # The live median comes from a log histogram; so does this one (quantised).
            hist = histogram.empty()
            for v in rng.lognormal(math.log(p.runtime_s * daily * slow), 0.5, size=done):
                histogram.add(hist, float(v))
            runtime = histogram.median(hist)
            wait = 0.2 * math.exp(float(rng.normal(0.0, 0.3))) + 60.0 * backlog / max(capacity, 1)
        out.append(
            BucketInput(
                bucket=now,
                submitted=arrivals,
                started=done,
                succeeded=done - failed,
                retried=failed,
                runtime_p50=runtime,
                queue_wait_p50=wait,
                errors=errors,
            )
        )
    return out


# --- generic series ------------------------------------------------------------------------

SeriesKind = Literal[
    "seasonal_quiet",
    "weekly_dip",
    "quantised_blip",
    "slow_ramp",
    "spikes",
    "level_shift",
    "long_early",
    "wander_quiet",
    "weekly_quiet",
]
SERIES_KINDS: tuple[SeriesKind, ...] = get_args(SeriesKind)
SERIES_START = datetime(2026, 3, 2)  # naive local time, as NAB files are; a Monday
STEP = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Labelled:
    """A `timestamp,value` series, its anomalies' (start, end) indices and scoring windows."""

    name: str
    kind: str
    timestamps: tuple[str, ...]
    values: tuple[float, ...]
    anomalies: tuple[tuple[int, int], ...] = ()
    windows: tuple[tuple[int, int], ...] = field(default=())


def _daily(n: int, phase: float = 0.0) -> np.ndarray:
    t = np.arange(n) * STEP.total_seconds() / 86400
    return np.sin(2 * np.pi * (t - 0.25 + phase))


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    e = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), n)
    out = np.empty(n)
    acc = 0.0
    for i in range(n):
        acc = phi * acc + e[i]
        out[i] = acc
    return out


def _seasonal_quiet(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n = 4032
    tod = (np.arange(n) % 288) / 288
    high = (tod >= 9 / 24) & (tod < 17 / 24)
    return np.where(high, 60.0, 20.0) + rng.normal(0, 1.0, n), []


def _weekly_dip(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n = 288 * 28
    day = np.arange(n) // 288
    weekly = np.where(day % 7 >= 5, 0.5, 1.0)
    lam = 200 * (1 + 0.7 * _daily(n)) * weekly
    start = int(rng.integers(288 * 15, n - 288 * 3))
    length = int(rng.integers(48, 96))  # 4-8 hours
    lam[start : start + length] *= 0.4 if rng.random() < 0.5 else 1.8
    return rng.poisson(lam).astype(float), [(start, start + length)]


def _quantised_blip(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n, q = 4032, 0.134
    k = rng.choice([-1, 0, 1], size=n, p=[0.01, 0.98, 0.01]).astype(float)
    at = int(rng.integers(1500, n - 200))
    length = int(rng.integers(1, 3))
    k[at : at + length] = rng.integers(6, 12)
    return 2.0 + q * k, [(at, at + length)]


def _slow_ramp(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n = 8000
    x = 70 + 2 * _daily(n, 0.3) + _ar1(rng, n, 0.9, 1.0)
    start = int(rng.integers(3000, n - 1500))
    ramp = int(rng.integers(400, 800))
    x[start : start + ramp] += np.linspace(0, 8, ramp)  # 8 sd of the noise, slowly
    x[start + ramp : start + ramp + 60] = 20 + rng.normal(0, 1, 60)  # the failure
    return x, [(start, start + ramp + 60)]


def _spikes(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n = 4032
    x = 50 + 5 * _daily(n) + _ar1(rng, n, 0.5, 1.0)
    out = []
    for lo in (1200, 2800):
        at = int(rng.integers(lo, lo + 800))
        x[at] += float(rng.choice([-1, 1])) * 9.0
        out.append((at, at + 1))
    return x, out


def _level_shift(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n = 4032
    x = 30 + 3 * _daily(n, 0.1) + _ar1(rng, n, 0.7, 1.0)
    at = int(rng.integers(1500, 3000))
    x[at:] += float(rng.choice([-1, 1])) * 4.0
    return x, [(at, at + 1)]


def _long_early(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n = 20000
    x = 100 + 10 * _daily(n) + _ar1(rng, n, 0.6, 2.0)
    at = int(rng.integers(1000, 2500))  # after a 750-point warm-up, inside the first 15%
    x[at : at + 12] += 14.0
    return x, [(at, at + 12)]


def _wander_quiet(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n = 4032
    return 10 + _ar1(rng, n, 0.98, 2.0) + rng.normal(0, 0.3, n), []


def _weekly_quiet(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    # Four weeks of job submissions with no incident: a daily cycle, quieter weekends
    # (multiplicative, as traffic is), counts with Poisson noise and benign deploy steps of
    # a few percent. Every flag here is a false alarm of the kind issue 17 counted.
    n = 288 * 28
    day = np.arange(n) // 288
    weekend = np.where(day % 7 >= 5, float(rng.uniform(0.3, 0.7)), 1.0)
    lam = float(rng.uniform(20, 300)) * (1 + 0.6 * _daily(n, float(rng.uniform(-0.1, 0.1))))
    for at in rng.integers(288 * 3, n, size=2):
        lam[at:] *= float(rng.uniform(0.95, 1.05))
    return rng.poisson(lam * weekend).astype(float), []


GENERATORS: dict[
    SeriesKind, Callable[[np.random.Generator], tuple[np.ndarray, list[tuple[int, int]]]]
] = {
    "seasonal_quiet": _seasonal_quiet,
    "weekly_dip": _weekly_dip,
    "quantised_blip": _quantised_blip,
    "slow_ramp": _slow_ramp,
    "spikes": _spikes,
    "level_shift": _level_shift,
    "long_early": _long_early,
    "wander_quiet": _wander_quiet,
    "weekly_quiet": _weekly_quiet,
}


def timestamps(n: int, start: datetime = SERIES_START, step: timedelta = STEP) -> list[str]:
    """NAB-style timestamp strings."""
    return [(start + i * step).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]


def windows_for(anomalies: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Scoring windows: each anomaly widened by 1% of the series on both sides."""
    pad = max(10, n // 100)
    return [(max(0, a - pad), min(n, b + pad)) for a, b in anomalies]


def generic_series(kind: SeriesKind, seed: int) -> Labelled:
    """One labelled series of a kind; the same (kind, seed) gives the same series."""
    rng = np.random.default_rng([SERIES_KINDS.index(kind), seed])
    values, anomalies = GENERATORS[kind](rng)
    n = len(values)
    return Labelled(
        name=f"{kind}-{seed}",
        kind=kind,
        timestamps=tuple(timestamps(n)),
        values=tuple(float(round(v, 4)) for v in values),
        anomalies=tuple(anomalies),
        windows=tuple(windows_for(anomalies, n)),
    )
