"""Tenant fairness in the relay: park a tenant's work past its window, release it as it starts.

The rules are :mod:`jobline.core.fairness`. The publisher asks :meth:`Fairness.split` for
each batch it took: a work message whose tenant already has a window's worth waiting in its
queue is parked (``outbox_parked``, in the batch's transaction) instead of published; the
rest of its row (lifecycle events) goes out as usual, and a delayed work message still makes
its job queued. :meth:`Fairness.round` (every ``relay_fair_interval_seconds``) counts, when
the ledger says a count can change anything, and publishes each tenant's room's worth of its
parked messages, best first, in one transaction that deletes them (committed after the
broker's acknowledgements, as a batch is: a failed publish leaves them parked).

One relay releases at a time (an advisory lock); every relay parks. Each also counts every
``FULL_COUNT_SECONDS`` whatever its ledger says, and at start: messages parked by a relay
that died, or by another replica, are released by whichever one counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Final

from jobline.core import fairness, topics
from jobline.core.envelope import InvalidEnvelope, WorkEnvelope
from jobline.pg import fairness as parked_store
from jobline.pg.db import Conn, Database
from jobline.pg.outbox import OutboxRow
from jobline_relay import metrics

log = logging.getLogger(__name__)

FULL_COUNT_SECONDS: Final = 5.0

# Publishes rows in the caller's transaction (Publisher.publish_parked).
Publish = Callable[[Conn, Sequence[OutboxRow]], Awaitable[int]]


class Fairness:
    """One relay's ledger of what each (queue, tenant) has waiting, and its release round."""

    def __init__(self, db: Database, window: int) -> None:
        self.db = db
        self.ledger = fairness.Ledger(window)
        self._counted_at = float("-inf")  # monotonic; never yet: the first round counts

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
        """Count if it can matter and publish what fits; how many messages were released."""
        now = time.monotonic()
        if not self.ledger.due_for_count() and now - self._counted_at < FULL_COUNT_SECONDS:
            return 0
        self._counted_at = now
        async with self.db.transaction() as conn:
            if not await parked_store.try_lock(conn):
                # Another relay releases; still learn the counts, so this one parks right.
                self.ledger.recount(await parked_store.counts(conn))
                return 0
            counts = await parked_store.counts(conn)
            self.ledger.recount(counts)
            moved = {}
            for key, n in fairness.grants(self.ledger.window, counts).items():
                rows = await parked_store.take(conn, key, n)
                if rows:
                    await publish(conn, rows)
                moved[key] = len(rows)
        self.ledger.released(moved)
        metrics.set_parked(self.ledger.parked)
        released = sum(moved.values())
        if released:
            metrics.UNPARKED.inc(released)
        return released
