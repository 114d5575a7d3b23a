"""The retention purge: delete due rows in small batches, one short transaction each.

Why batches: one ``DELETE`` of a day's finished jobs would hold its row locks and keep an old
snapshot open for its whole run (autovacuum cannot clean anything newer meanwhile), and write
its WAL in one burst. A batch of a few hundred rows commits in milliseconds; between batches
the purger pauses a little, and the freed space is reused by new rows once vacuum has passed,
so a table under a steady load stays the same size instead of growing.

:class:`Purger` runs rounds over any set of tables (the relay's: jobs with their attempts and
idempotency keys, below; the analyzer's: its own store), sizing each table's batches by
:func:`jobline.core.retention.next_batch_size` and counting what it deleted per table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from jobline.core.retention import BatchLimits, next_batch_size, round_done
from jobline.observe.metrics import LATENCY_BUCKETS, REGISTRY, Counter, Histogram
from jobline.pg.db import Database
from jobline.pg.queries import SQL, rowcount
from jobline.pg.workflowstore import SQL as WORKFLOWS_SQL

PURGED: Final = Counter(
    "jobline_purged_rows",
    "Rows deleted by the retention purge, by table.",
    ["table"],
    registry=REGISTRY,
)
BATCH_SECONDS: Final = Histogram(
    "jobline_purge_batch_seconds",
    "Duration of one purge batch (its transaction, locks included), by table.",
    ["table"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

Counts = dict[str, int]
BatchFn = Callable[[int], Awaitable[Counts | None]]
"""Deletes up to n due rows in one transaction; returns rows deleted per table, or None when
another replica holds this table's purge lock (skip the round)."""


@dataclass(frozen=True, slots=True)
class Purge:
    """One table's purge: ``batch`` deletes from ``table`` (and, maybe, rows hanging off it)."""

    table: str
    batch: BatchFn


class Purger:
    """Runs purge rounds, remembering each table's batch size from round to round."""

    def __init__(
        self,
        limits: BatchLimits,
        *,
        round_budget_seconds: float,
        pause_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.round_budget = round_budget_seconds
        self.pause = pause_seconds
        self.clock = clock
        self.sizes: dict[str, int] = {}

    async def round(self, purges: Sequence[Purge], stop: asyncio.Event | None = None) -> Counts:
        """Drain each table in turn (until nothing is due, or its time budget is spent)."""
        totals: Counts = {}
        for purge in purges:
            if stop is not None and stop.is_set():
                break
            for table, rows in (await self._drain(purge, stop)).items():
                totals[table] = totals.get(table, 0) + rows
        return totals

    async def _drain(self, purge: Purge, stop: asyncio.Event | None) -> Counts:
        totals: Counts = {}
        size = self.sizes.get(purge.table, self.limits.initial)
        started = self.clock()
        while True:
            before = self.clock()
            counts = await purge.batch(size)
            elapsed = self.clock() - before
            if counts is None:
                return totals  # another replica is purging this table right now
            BATCH_SECONDS.labels(purge.table).observe(elapsed)
            for table, rows in counts.items():
                totals[table] = totals.get(table, 0) + rows
                if rows:
                    PURGED.labels(table).inc(rows)
            deleted = counts.get(purge.table, 0)
            done = round_done(deleted, size, self.clock() - started, self.round_budget)
            size = self.sizes[purge.table] = next_batch_size(size, deleted, elapsed, self.limits)
            if done or (stop is not None and stop.is_set()):
                return totals
            # Between batches: other writers get the rows' pages, and the server breathes.
            await asyncio.sleep(self.pause)


# --- the relay's tables (statements in queries.sql) -----------------------------------------


def _lock_name(table: str) -> str:
    return f"jobline-purge:{table}"


async def jobs_batch(db: Database, limit: int) -> Counts | None:
    """Finished jobs whose ``purge_after`` passed, with their attempts."""
    async with db.transaction() as conn:
        if not await SQL.fetchval(conn, "purge_lock", name=_lock_name("jobs")):
            return None
        row = await SQL.fetchrow(conn, "purge_jobs", limit=limit)
    assert row is not None  # an aggregate always returns its row
    return {"jobs": int(row["jobs"]), "job_attempts": int(row["attempts"])}


async def idempotency_keys_batch(db: Database, limit: int) -> Counts | None:
    """Idempotency-Keys whose ``expires_at`` passed."""
    async with db.transaction() as conn:
        if not await SQL.fetchval(conn, "purge_lock", name=_lock_name("idempotency_keys")):
            return None
        status = await SQL.execute(conn, "purge_idempotency_keys", limit=limit)
    return {"idempotency_keys": rowcount(status)}


async def workflows_batch(db: Database, limit: int) -> Counts | None:
    """Finished workflows none of whose nodes is left (the jobs' purge took them)."""
    async with db.transaction() as conn:
        if not await SQL.fetchval(conn, "purge_lock", name=_lock_name("workflows")):
            return None
        status = await WORKFLOWS_SQL.execute(conn, "purge_workflows", limit=limit)
    return {"workflows": rowcount(status)}


def relay_purges(db: Database) -> list[Purge]:
    """What the relay purges: jobs (with their attempts), then idempotency keys, then the
    workflows whose nodes are gone."""
    return [
        Purge("jobs", lambda n: jobs_batch(db, n)),
        Purge("idempotency_keys", lambda n: idempotency_keys_batch(db, n)),
        Purge("workflows", lambda n: workflows_batch(db, n)),
    ]
