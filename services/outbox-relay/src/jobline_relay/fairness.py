"""Tenant fairness in the relay: park a tenant's work past its window, release it as it starts.

The rules are :mod:`jobline.core.fairness`. The publisher asks :meth:`Fairness.split` for
each batch it took: a work message whose tenant already has a window's worth waiting in its
queue is parked (``outbox_parked``, in the batch's transaction) instead of published; the
rest of its row (lifecycle events) goes out as usual, and a delayed work message still makes
its job queued. :meth:`Fairness.round` (every ``relay_fair_interval_seconds``) counts, when
the ledger says a count can change anything, and moves each tenant's room's worth of its
parked messages back into the outbox, best first; those rows are *admitted*: published
without asking again. One relay releases at a time (an advisory lock); every relay parks.
It also counts every ``FULL_COUNT_SECONDS`` whatever its ledger says, and at start: messages
parked by a relay that died, or by another replica, are released by whichever one counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
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
            if row.admitted or row.job_id is None:
                kept.append(row)
                continue
            messages = []
            for logical, value in row.messages:
                parked = self._park(row, logical, value)
                if parked is None:
                    messages.append((logical, value))
                else:
                    held.append(parked)
            # The delayed work message still makes its job queued: parked is queued too.
            kept.append(
                row
                if len(messages) == len(row.messages)
                else replace(row, messages=tuple(messages))
            )
        return kept, held

    def _park(self, row: OutboxRow, logical: str, value: bytes) -> parked_store.Parked | None:
        if not topics.is_work(logical) or row.job_id is None:
            return None
        try:
            envelope = WorkEnvelope.decode(value)
        except InvalidEnvelope:
            return None  # published as it is: the worker dead-letters it
        queue = topics.queue_of(logical)
        if self.ledger.admit((queue, envelope.tenant)):
            return None
        return parked_store.Parked(
            row.job_id, queue, envelope.tenant, envelope.priority, logical, value, row.key
        )

    async def park(self, conn: Conn, messages: Sequence[parked_store.Parked]) -> None:
        await parked_store.park(conn, messages)
        if messages:
            metrics.PARKED.inc(len(messages))

    async def round(self) -> int:
        """Count if it can matter and release what fits; how many messages were released."""
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
            grants = fairness.grants(self.ledger.window, counts)
            moved = {key: await parked_store.release(conn, key, n) for key, n in grants.items()}
        self.ledger.released(moved)
        metrics.set_parked(self.ledger.parked)
        released = sum(moved.values())
        if released:
            metrics.UNPARKED.inc(released)
        return released
