"""Synthetic per-minute rollups for a day of jobs, with injected incidents and ground truth.

The analyzer sees per-minute rollups (arrivals, finished runs, failures by error class, median
run time and queue wait), so that is what this generates: a small queue model per job type
with Poisson arrivals under daily seasonality, a worker capacity, log-normal run times whose
per-minute median is as noisy as the number of runs allows, and Bernoulli failures spread over
the type's usual error classes. Seeded numpy Generator: the same seed gives the same day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import numpy as np

IncidentKind = Literal["failure_burst", "latency_shift", "stall", "new_error_class"]
INCIDENT_KINDS: tuple[IncidentKind, ...] = get_args(IncidentKind)
DAY_START = datetime(2026, 1, 5, tzinfo=UTC)
NEW_ERROR = "ConnectionRefusedError: connect to <ip> refused"


@dataclass(frozen=True, slots=True)
class Profile:
    """A job type's normal behaviour."""

    name: str
    rate_per_min: float
    runtime_s: float
    failure_rate: float
    errors: tuple[str, ...]
    phase: float = 0.0


@dataclass(frozen=True, slots=True)
class Incident:
    """Ground truth: what went wrong, for which type, from start (inclusive) to end."""

    job_type: str
    kind: IncidentKind
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class MinuteRollup:
    """What the analyzer's ingest keeps per tenant, job type and minute."""

    tenant: str
    job_type: str
    minute: datetime
    arrivals: int
    succeeded: int
    failed: int
    runtime_p50: float | None
    queue_wait_p50: float | None
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Day:
    """A simulated day: rollups in minute order and the incidents injected."""

    rollups: tuple[MinuteRollup, ...]
    incidents: tuple[Incident, ...]


PROFILES: tuple[Profile, ...] = (
    Profile("send-email", 40.0, 0.8, 0.02, ("SMTPServerDisconnected: <str>", "TimeoutError"), 0.0),
    Profile("resize-image", 12.0, 3.0, 0.01, ("OSError: cannot identify image file <str>",), 0.1),
    Profile("charge-card", 6.0, 1.5, 0.03, ("CardDeclined: card <n> declined",), 0.2),
    Profile("generate-report", 2.0, 20.0, 0.02, ("MemoryError",), 0.3),
    Profile("sync-crm", 20.0, 0.5, 0.01, ("HTTPError: <n> from <url>",), 0.15),
    Profile("quiet-type", 8.0, 1.0, 0.02, ("KeyError: <str>",), 0.05),
)

# Which job types get which incidents (cycled with the seed so every kind recurs).
_INCIDENT_PLAN = (
    ("failure_burst", "latency_shift"),
    ("stall", "new_error_class"),
    ("latency_shift", "failure_burst"),
    ("new_error_class", "stall"),
    ("failure_burst", "stall"),
)


def plan_incidents(rng: np.random.Generator, profiles: tuple[Profile, ...]) -> list[Incident]:
    """Two non-overlapping incidents per job type except the last, which stays quiet."""
    incidents = []
    offset = int(rng.integers(len(_INCIDENT_PLAN)))
    for i, profile in enumerate(profiles[:-1]):
        kinds = _INCIDENT_PLAN[(i + offset) % len(_INCIDENT_PLAN)]
        # First incident between 04:00 and 11:00, second between 14:00 and 22:00.
        for kind, (lo, hi) in zip(kinds, ((240, 660), (840, 1320)), strict=True):
            start = int(rng.integers(lo, hi))
            length = int(rng.integers(20, 61))
            incidents.append(
                Incident(
                    profile.name,
                    kind,  # type: ignore[arg-type]
                    DAY_START + timedelta(minutes=start),
                    DAY_START + timedelta(minutes=start + length),
                )
            )
    return incidents


def simulate_day(
    seed: int,
    profiles: tuple[Profile, ...] = PROFILES,
    with_incidents: bool = True,
    tenant: str = "acme",
    minutes: int = 1440,
) -> Day:
    """Generate `minutes` of rollups for every profile; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    incidents = plan_incidents(rng, profiles) if with_incidents else []
    rollups: list[MinuteRollup] = []
    backlog = {p.name: 0.0 for p in profiles}
    for m in range(minutes):
        now = DAY_START + timedelta(minutes=m)
        for p in profiles:
            active: set[str] = {
                i.kind for i in incidents if i.job_type == p.name and i.start <= now < i.end
            }
            rollups.append(
                _minute(rng, p, m=m, now=now, active=active, backlog=backlog, tenant=tenant)
            )
    return Day(tuple(rollups), tuple(incidents))


def _minute(
    rng: np.random.Generator,
    p: Profile,
    *,
    m: int,
    now: datetime,
    active: set[str],
    backlog: dict[str, float],
    tenant: str,
) -> MinuteRollup:
    season = 1.0 + 0.6 * math.sin(2 * math.pi * (m / 1440 - 0.25 + p.phase))
    arrivals = int(rng.poisson(p.rate_per_min * season))
    slow = 1.8 if "latency_shift" in active else 1.0
    # Capacity is three times the mean arrival rate, in jobs per minute, less when jobs are slow.
    capacity = 0.0 if "stall" in active else 3.0 * p.rate_per_min / slow
    waiting = backlog[p.name] + arrivals
    done = int(min(waiting, rng.poisson(capacity) if capacity > 0 else 0))
    backlog[p.name] = waiting - done
    fail_p = 0.25 if "failure_burst" in active else p.failure_rate
    failed = int(rng.binomial(done, fail_p))
    errors: dict[str, int] = {}
    if failed:
        split = rng.multinomial(failed, [1 / len(p.errors)] * len(p.errors))
        errors = {cls: int(n) for cls, n in zip(p.errors, split, strict=True) if n}
    if "new_error_class" in active:
        extra = int(rng.binomial(done - failed, 0.15))
        if extra:
            errors[NEW_ERROR] = extra
            failed += extra
    runtime = queue_wait = None
    if done:
        # Median of n log-normal(sigma=0.5) draws: its log has sd about 1.25 * 0.5 / sqrt(n).
        daily = 1.0 + 0.15 * math.sin(2 * math.pi * (m / 1440 + p.phase))
        noise = float(rng.normal(0.0, 0.625 / math.sqrt(done)))
        runtime = p.runtime_s * daily * slow * math.exp(noise)
        base_wait = 0.2 * math.exp(float(rng.normal(0.0, 0.3)))
        queue_wait = base_wait + 60.0 * backlog[p.name] / max(capacity, 1.0)
    return MinuteRollup(
        tenant=tenant,
        job_type=p.name,
        minute=now,
        arrivals=arrivals,
        succeeded=done - failed,
        failed=failed,
        runtime_p50=runtime,
        queue_wait_p50=queue_wait,
        errors=errors,
    )
