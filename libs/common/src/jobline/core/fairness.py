"""Tenant fairness on a queue: how much of one tenant's work may wait in the broker. Pure.

With Kafka as the transport, whatever the relay publishes waits in the queue's partitions in
order: a tenant that submits 50,000 jobs would put all of them ahead of another tenant's
next job. So the relay lets each tenant have at most a *window* of work waiting per queue
(queued and not parked: published, or about to be); the rest of its work messages stay in
PostgreSQL, *parked*, and are published best first (priority, then age) as that
tenant's jobs start. Another tenant's trickle then waits behind at most one window of each
busy tenant's work, whatever their backlogs, and nobody's job is dropped or reordered within
its tenant beyond priority.

What waits is counted in PostgreSQL now and then (:class:`Ledger` says when); between counts
the relay adds what it publishes itself. That estimate only errs high (a row the count saw
in the outbox is added again when published), so a tenant may be held back a little early,
never let past its window by the estimate; the next count corrects it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

# (queue, tenant)
Key = tuple[str, str]

# The count is refreshed once some tenant's estimate reaches this share of the window.
RECOUNT_SHARE: Final = 0.5


@dataclass(frozen=True, slots=True)
class Count:
    """One (queue, tenant) as counted: its waiting work and its parked messages."""

    waiting: int
    parked: int


@dataclass(slots=True)
class Ledger:
    """The relay's estimate of each (queue, tenant)'s waiting work since the last count.

    While a whole queue has less than a window waiting, no tenant of it can be at its window,
    so a message is admitted without reading its tenant (:meth:`admit_any`): it counts for
    every tenant of the queue until the next count says whose it was.
    """

    window: int
    counted: dict[Key, int] = field(default_factory=dict)
    sent: dict[Key, int] = field(default_factory=dict)
    parked: dict[Key, int] = field(default_factory=dict)
    unattributed: dict[str, int] = field(default_factory=dict)  # by queue
    totals: dict[str, int] = field(default_factory=dict)  # waiting by queue, all tenants

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"the fairness window must be at least 1, not {self.window}")

    def waiting(self, key: Key) -> int:
        return self.counted.get(key, 0) + self.sent.get(key, 0) + self.unattributed.get(key[0], 0)

    def admit_any(self, queue: str) -> bool:
        """Whether a message of ``queue`` may be published whoever's it is (and note it)."""
        total = self.totals.get(queue, 0)
        if total + 1 >= self.window:
            return False  # ask per tenant
        self.unattributed[queue] = self.unattributed.get(queue, 0) + 1
        self.totals[queue] = total + 1
        return True

    def admit(self, key: Key) -> bool:
        """Whether one more work message of ``key`` may be published now (and note it)."""
        if self.waiting(key) >= self.window:
            self.parked[key] = self.parked.get(key, 0) + 1
            return False
        self.sent[key] = self.sent.get(key, 0) + 1
        self.totals[key[0]] = self.totals.get(key[0], 0) + 1
        return True

    def recount(self, counts: Mapping[Key, Count]) -> None:
        """Start again from a count (what was sent before it is in it)."""
        self.counted = {k: c.waiting for k, c in counts.items() if c.waiting > 0}
        self.parked = {k: c.parked for k, c in counts.items() if c.parked > 0}
        self.sent = {}
        self.unattributed = {}
        self.totals = {}
        for (queue, _), n in self.counted.items():
            self.totals[queue] = self.totals.get(queue, 0) + n

    def released(self, grants: Mapping[Key, int]) -> None:
        """Parked messages were published: they wait now."""
        for key, n in grants.items():
            self.counted[key] = self.counted.get(key, 0) + n
            self.totals[key[0]] = self.totals.get(key[0], 0) + n
            left = self.parked.get(key, 0) - n
            if left > 0:
                self.parked[key] = left
            else:
                self.parked.pop(key, None)

    def due_for_count(self) -> bool:
        """Whether a count can change anything: something is parked, or some queue has half a
        window waiting (otherwise nobody is held back, and counting would cost for nothing)."""
        if self.parked:
            return True
        near = self.window * RECOUNT_SHARE
        return any(total >= near for total in self.totals.values())


def grants(window: int, counts: Mapping[Key, Count]) -> dict[Key, int]:
    """How many parked messages of each (queue, tenant) go back now: its room in the window.

    A negative ``waiting`` (parked messages of jobs that were cancelled meanwhile) counts
    as none waiting: those messages go out and the worker's claim refuses them.
    """
    out = {}
    for key, count in counts.items():
        room = window - max(count.waiting, 0)
        if count.parked > 0 and room > 0:
            out[key] = min(count.parked, room)
    return out


def combine(
    queued: Iterable[tuple[str, str, int]], parked: Iterable[tuple[str, str, int]]
) -> dict[Key, Count]:
    """Counts from the queued jobs and the parked messages per (queue, tenant)."""
    q = {(queue, tenant): n for queue, tenant, n in queued}
    p = {(queue, tenant): n for queue, tenant, n in parked}
    return {k: Count(q.get(k, 0) - p.get(k, 0), p.get(k, 0)) for k in q.keys() | p.keys()}
