"""Concurrency and rate limits on starting jobs: what they count and when they admit. Pure.

A limit is declared per job type (``@worker.job(..., concurrency=5, concurrency_key=
"customer_id", rate_limit="10/s")``). What it counts is a *gate*: the jobs that share its key.
By default a gate is one tenant's jobs of the type; ``key="*"`` makes it every tenant's (a
shared downstream, such as one provider account); any other key names a payload field, and
the gate is one tenant's jobs with that field's value (at most 5 running per customer).

The worker asks at the claim, under a lock on each gate (jobline.pg.gates), so every worker
process sees one count. A job over a limit is not dropped and does not spin: it waits in
PostgreSQL (``scheduled``, ``waiting_on`` the gate) without a work message, and the relay
releases waiting jobs as the gate frees (jobline_relay.gates): a finished job for a
concurrency gate, the window moving on for a rate gate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

ALL_TENANTS: Final = "*"

_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*")
_UNITS: Final = {
    **dict.fromkeys(("s", "sec", "second"), 1),
    **dict.fromkeys(("m", "min", "minute"), 60),
    **dict.fromkeys(("h", "hour"), 3600),
}


class LimitKind(StrEnum):
    CONCURRENCY = "concurrency"
    RATE = "rate"


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``max`` jobs running at once (concurrency), or started within any
    ``period_seconds`` (rate), per gate; ``key`` says what a gate is (see the module)."""

    kind: LimitKind
    max: int
    key: str | None = None
    period_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.max < 1:
            raise ValueError(f"a {self.kind} limit must be at least 1, not {self.max}")
        if self.kind is LimitKind.RATE and self.period_seconds <= 0:
            raise ValueError("a rate limit needs a period > 0")
        if self.key is not None and not self.key:
            raise ValueError("a limit's key must be a payload field name or '*'")


def concurrency(max_running: int, key: str | None = None) -> Limit:
    return Limit(LimitKind.CONCURRENCY, max_running, key)


def rate(spec: str, key: str | None = None) -> Limit:
    """``"10/s"``, ``"100/min"``, ``"5/10s"`` (5 per 10 seconds), ``"1000/h"``."""
    match = _RATE.fullmatch(spec)
    if match is None:
        raise ValueError(f"invalid rate {spec!r}: use e.g. '10/s', '100/min' or '5/10s'")
    count, every, unit = match.groups()
    return Limit(LimitKind.RATE, int(count), key, float(int(every or 1) * _UNITS[unit]))


@dataclass(frozen=True, slots=True)
class Gate:
    """The jobs one limit counts together, named by ``key`` (stored, and locked on)."""

    key: str
    limit: Limit

    @property
    def label(self) -> str:
        return label_of(self.key)


def label_of(gate_key: str) -> str:
    """A bounded name for metrics: kind and job type, never tenants or payload values."""
    return ":".join(gate_key.split(":")[:2])


class NoGateKey(ValueError):
    """The payload lacks the field a limit is keyed on (the job runs ungated: see below)."""


def gate(limit: Limit, job_type: str, tenant: str, payload: Any) -> Gate:
    """The gate ``limit`` puts a job of ``job_type`` for ``tenant`` with ``payload`` in."""
    if limit.key == ALL_TENANTS:
        scope = ALL_TENANTS
    elif limit.key is None:
        scope = tenant
    else:
        if not isinstance(payload, Mapping) or limit.key not in payload:
            raise NoGateKey(f"payload has no {limit.key!r} for the {limit.kind} limit")
        value = payload[limit.key]
        scope = f"{tenant}:{limit.key}={value}"
    return Gate(f"{limit.kind}:{job_type}:{scope}", limit)


def gates(limits: Sequence[Limit], job_type: str, tenant: str, payload: Any) -> list[Gate]:
    """Every gate of a job, sorted by key: the order they are locked in (no deadlock).

    A limit keyed on a payload field the payload lacks does not apply to that job: refusing
    it at the claim would lose it, and the gateway cannot know the worker's limits.
    """
    found = {}
    for limit in limits:
        try:
            g = gate(limit, job_type, tenant, payload)
        except NoGateKey:
            continue
        found[g.key] = g
    return [found[k] for k in sorted(found)]


def admits(limit: Limit, counted: int) -> bool:
    """Whether one more start fits, ``counted`` being the gate's running jobs (concurrency)
    or its starts in the window (rate)."""
    return counted < limit.max


def window_start(limit: Limit, now: datetime) -> datetime:
    """Starts after this moment count against a rate limit at ``now``.

    Every recorded start after it counts, also one stamped later than ``now`` (another
    worker's clock, or a claim that took the lock first): so in any window of the period,
    the start admitted last saw every other one, and there are never more than ``max``.
    """
    return now - timedelta(seconds=limit.period_seconds)


def rate_capacity(limit: Limit, starts_in_window: int, pending: int) -> int:
    """How many waiting jobs to release now: room in the window less those released and
    not yet started."""
    return max(limit.max - starts_in_window - pending, 0)


def concurrency_capacity(limit: Limit, running: int, pending: int) -> int:
    return max(limit.max - running - pending, 0)


def describe(g: Gate, counted: int) -> str:
    """Why a job waits, for its representation (``waiting_on``) and the logs."""
    if g.limit.kind is LimitKind.RATE:
        return f"{g.key} ({counted} of {g.limit.max} per {g.limit.period_seconds:g}s)"
    return f"{g.key} ({counted} of {g.limit.max} running)"


@dataclass(frozen=True, slots=True)
class Override:
    """A tenant's own limits of a job type (``PUT /v1/job-types/{type}/limits``).

    Both left out is an override too: the tenant's jobs of the type start unlimited (bar a
    limit shared by every tenant, see :func:`effective`).
    """

    concurrency: int | None = None
    concurrency_key: str | None = None
    rate_limit: str | None = None
    rate_key: str | None = None

    def __post_init__(self) -> None:
        for key in (self.concurrency_key, self.rate_key):
            if key == ALL_TENANTS:
                raise ValueError("a tenant's own limit cannot count other tenants' jobs ('*')")
        if self.concurrency_key is not None and self.concurrency is None:
            raise ValueError("concurrency_key needs concurrency")
        if self.rate_key is not None and self.rate_limit is None:
            raise ValueError("rate_key needs rate_limit")
        self.limits()  # refuses a bad count or rate now, not at a worker's claim

    def limits(self) -> tuple[Limit, ...]:
        out = []
        if self.concurrency is not None:
            out.append(concurrency(self.concurrency, self.concurrency_key))
        if self.rate_limit is not None:
            out.append(rate(self.rate_limit, self.rate_key))
        return tuple(out)


def effective(declared: Sequence[Limit], override: Override | None) -> tuple[Limit, ...]:
    """The limits a tenant's job starts under: the handler's, or the tenant's own override
    of them. A limit the handler shares across tenants (key ``"*"``: one provider account)
    stays: a tenant's own limits cannot lift what protects every tenant."""
    if override is None:
        return tuple(declared)
    return tuple(lim for lim in declared if lim.key == ALL_TENANTS) + override.limits()


def gate_prefixes(job_type: str, tenant: str) -> list[str]:
    """Every gate key a tenant's jobs of ``job_type`` can have starts with one of these
    (``<kind>:<type>:<tenant>``, then nothing or ``:<field>=<value>``)."""
    return [f"{kind.value}:{job_type}:{tenant}" for kind in LimitKind]


def to_dict(limit: Limit) -> dict[str, Any]:
    return {
        "kind": limit.kind.value,
        "max": limit.max,
        "key": limit.key,
        "period_seconds": limit.period_seconds,
    }


def from_dict(data: Mapping[str, Any]) -> Limit:
    return Limit(
        LimitKind(data["kind"]),
        int(data["max"]),
        data.get("key"),
        float(data.get("period_seconds") or 0.0),
    )
