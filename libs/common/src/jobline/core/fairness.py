"""Tenant fairness on a queue: how much of one tenant's work may wait in the broker. Pure.

With Kafka as the transport, whatever the relay publishes waits in the queue's partitions in
order: a tenant that submits 50,000 jobs would put all of them ahead of another tenant's
next job. So the relay lets each tenant have at most a *window* of work waiting per queue
(queued and not parked: published, or about to be); the rest of its work messages stay in
PostgreSQL, *parked*, and are published best first (priority, then age) as that
tenant's jobs start. Another tenant's trickle then waits behind at most one window of each
busy tenant's work, whatever their backlogs, and nobody's job is dropped or reordered within
its tenant beyond priority.

What waits is counted in PostgreSQL, a queue at a time, while the queue has work parked or
is near a window (:meth:`Ledger.queues_near`); between counts the relay adds what it
publishes itself. That estimate only errs high (a row the count saw in the outbox is added
again when published), so a tenant may be held back a little early, never let past its
window by the estimate; the next count corrects it. A queue whose count frees nothing (its
workers are gone or slow) is counted less and less often (:class:`Pacing`), so a backlog
nobody consumes costs next to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from jobline.core.backoff import exponential

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

    def recount_queue(self, queue: str, counts: Mapping[Key, Count]) -> None:
        """Start the queue again from its count (what was sent before it is in it)."""
        for table in (self.counted, self.sent, self.parked):
            for key in [k for k in table if k[0] == queue]:
                del table[key]
        self.unattributed.pop(queue, None)
        total = 0
        for key, count in counts.items():
            if count.waiting > 0:
                self.counted[key] = count.waiting
                total += count.waiting
            if count.parked > 0:
                self.parked[key] = count.parked
        self.totals[queue] = total

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

    def queues_near(self) -> set[str]:
        """Queues worth counting for the estimate's sake: some of their work is parked, or
        half a window waits (otherwise nobody is held back, and counting costs for nothing)."""
        near = self.window * RECOUNT_SHARE
        queues = {queue for queue, total in self.totals.items() if total >= near}
        return queues | {queue for queue, _ in self.parked}


class Pacing:
    """When to count a queue with parked work again: every round while it progresses (its
    jobs start, or a count frees room), then less and less often while it does not (nobody
    consumes it), backing off to ``cap`` seconds.
    """

    def __init__(self, interval: float, cap: float = 2.0) -> None:
        self.interval = interval
        self.cap = max(cap, interval)
        self._idle: dict[str, int] = {}
        self._next: dict[str, float] = {}

    def due(self, queue: str, now: float) -> bool:
        return now >= self._next.get(queue, float("-inf"))

    def counted(self, queue: str, progressed: bool, now: float) -> None:
        """Note a count; ``progressed``: jobs started since the last one, it released
        something, or nothing was parked."""
        if progressed:
            self._idle.pop(queue, None)
            self._next.pop(queue, None)
            return
        idle = self._idle.get(queue, 0) + 1
        self._idle[queue] = idle
        self._next[queue] = now + exponential(self.interval, idle, self.cap)


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
