"""Tenant fairness in the relay: park a tenant's work past its window, release it as it starts.

The rules are :mod:`jobline.core.fairness`. The publisher asks :meth:`Fairness.split` for
each batch it took: a work message whose tenant already has a window's worth waiting in its
queue is parked (``outbox_parked``, in the batch's transaction) instead of published; the
rest of its row (lifecycle events) goes out as usual, and a delayed work message still makes
its job queued. :meth:`Fairness.round` (every ``relay_fair_interval_seconds``) counts each
queue that has work parked (found in PostgreSQL, so what a relay that died parked is found
too) or that the ledger has near a window, as :class:`~jobline.core.fairness.Pacing` allows,
and publishes each tenant's room's worth of its parked messages, best first, in one
transaction that deletes them (committed after the broker's acknowledgements, as a batch is:
a failed publish leaves them parked). One relay releases at a time (an advisory lock); every
relay parks, and counts for its own ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from jobline.core import fairness, topics
from jobline.core.envelope import InvalidEnvelope, WorkEnvelope
from jobline.pg import fairness as parked_store
from jobline.pg.db import Conn, Database
from jobline.pg.outbox import OutboxRow
from jobline_relay import metrics

log = logging.getLogger(__name__)

# Publishes rows in the caller's transaction (Publisher.publish_parked).
Publish = Callable[[Conn, Sequence[OutboxRow]], Awaitable[int]]


class Fairness:
    """One relay's ledger of what each (queue, tenant) has waiting, and its release round."""

    def __init__(self, db: Database, window: int, interval: float) -> None:
        self.db = db
        self.ledger = fairness.Ledger(window)
        self.pacing = fairness.Pacing(interval)
        # Each queue's waiting work right after its last round (its count plus what it
        # released): less at the next count means its jobs are starting.
        self._after: dict[str, int] = {}

    def split(self, rows: Sequence[OutboxRow]) -> tuple[list[OutboxRow], list[parked_store.Parked]]:
        """The rows less the work messages to park, and those messages."""
        kept: list[OutboxRow] = []
        held: list[parked_store.Parked] = []
        for row in rows:
            messages = []
            for logical, value in row.messages:
                parked = self._park(row, logical, value)
                if parked is None:
                    messages.append((logical, value))
                else:
                    held.append(parked)
            # A delayed work message still makes its job queued: a parked job is queued too.
            same = len(messages) == len(row.messages)
            kept.append(row if same else replace(row, messages=tuple(messages)))
        return kept, held

    def _park(self, row: OutboxRow, logical: str, value: bytes) -> parked_store.Parked | None:
        if not topics.is_work(logical) or row.job_id is None:
            return None
        queue = topics.queue_of(logical)
        if self.ledger.admit_any(queue):
            return None  # the queue is far from any window: no need to read whose it is
        try:
            envelope = WorkEnvelope.decode(value)
        except InvalidEnvelope:
            return None  # published as it is: the worker dead-letters it
        if self.ledger.admit((queue, envelope.tenant)):
            return None
        return parked_store.Parked(
            row.job_id, queue, envelope.tenant, envelope.priority, logical, value, row.key
        )

    async def park(self, conn: Conn, messages: Sequence[parked_store.Parked]) -> None:
        await parked_store.park(conn, messages)
        if messages:
            metrics.PARKED.inc(len(messages))

    async def round(self, publish: Publish) -> int:
        """Count the queues worth it and publish what fits; how many messages were released.

        A queue at a time, each in its own transaction: one queue whose publish fails (its
        messages stay parked) holds no other back.
        """
        now = time.monotonic()
        async with self.db.connection() as conn:
            queues = set(await parked_store.parked_queues(conn)) | self.ledger.queues_near()
        total = 0
        for queue in sorted(q for q in queues if self.pacing.due(q, now)):
            try:
                total += await self._round_of(queue, publish, now)
            except Exception as exc:  # the next round tries again
                log.warning("releasing %s failed: %s: %s", queue, type(exc).__name__, exc)
                self.pacing.counted(queue, False, now)
        metrics.set_parked(self.ledger.parked)
        if total:
            metrics.UNPARKED.inc(total)
        return total

    async def _round_of(self, queue: str, publish: Publish, now: float) -> int:
        moved: dict[fairness.Key, int] = {}
        async with self.db.transaction() as conn:
            releaser = await parked_store.try_lock(conn, queue)
            counts = await parked_store.count_queue(conn, queue)
            self.ledger.recount_queue(queue, counts)
            parked = any(c.parked for c in counts.values())
            waiting = sum(max(c.waiting, 0) for c in counts.values())
            draining = waiting < self._after.get(queue, waiting + 1)
            if not releaser:  # another relay releases it; this one only learnt the counts
                self._after[queue] = waiting
                self.pacing.counted(queue, draining or not parked, now)
                return 0
            for key, n in fairness.grants(self.ledger.window, counts).items():
                rows = await parked_store.take(conn, key, n)
                if rows:
                    await publish(conn, rows)
                moved[key] = len(rows)
        self.ledger.released(moved)
        released = sum(moved.values())
        self._after[queue] = waiting + released
        # Backs off only from a queue whose jobs are not starting (nobody consumes it): a
        # full window that is draining is counted every round, so its room is used at once.
        self.pacing.counted(queue, released > 0 or draining or not parked, now)
        return released
