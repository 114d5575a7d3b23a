"""Releasing jobs held by a concurrency or rate limit (jobline.core.limits) as gates free.

A worker that finds a job's gate full holds the job in PostgreSQL (``scheduled``, waiting on
the gate, no work message). Each round, for every gate with held jobs, this counts the gate
under its lock (the claims' lock, so the count is the one they see), subtracts the jobs it
released earlier that have not started yet, and releases that many, best first (priority,
then age): ``Resume`` writes each one's work message. A released job that finds the gate
full again (another job took the room first) is held again; it never runs over the limit,
because the claim decides (jobline_worker.gating), not this.

A gate whose limit the relay no longer knows (a tenant set or removed its own limits of the
type) releases its held jobs up to ``FORGOTTEN_BATCH`` a round: each claim decides again
under the limits in force now, and holds again (noting the gate's limit) what does not fit.

A round costs one indexed query while nothing is held; the relay runs one every
``limit_release_interval_seconds`` (a held job waits at most about that long after its gate
frees, plus the trip through the broker).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from jobline.core import limits
from jobline.core.errors import IllegalTransition
from jobline.core.states import Resume, transition
from jobline.pg import gates, jobstore
from jobline.pg.db import Conn, Database
from jobline_relay import metrics

FORGOTTEN_BATCH: Final = 1000


async def release_all(db: Database) -> int:
    """One round over every gate with held jobs; returns how many jobs were released."""
    async with db.connection() as conn:
        rows = await gates.held_gates(conn)
    labels: dict[str, int] = {}
    released = 0
    for row in rows:
        if row["kind"] is None:
            label = limits.label_of(row["gate"])
            labels[label] = labels.get(label, 0) + int(row["held"])
            released += await _release_forgotten(db, row["gate"], label)
            continue
        limit = limits.Limit(limits.LimitKind(row["kind"]), row["max"], None, row["period_seconds"])
        gate = limits.Gate(row["gate"], limit)
        labels[gate.label] = labels.get(gate.label, 0) + int(row["held"])
        released += await _release(db, gate, int(row["held"]), int(row["released"]))
    metrics.set_held(labels)
    return released


async def _release_forgotten(db: Database, gate: str, label: str) -> int:
    async with db.transaction() as conn:
        await gates.lock_key(conn, gate)
        ids = await gates.held_jobs(conn, gate, FORGOTTEN_BATCH)
        released = await _resume(conn, ids)
    metrics.LIMIT_RELEASES.labels(label).inc(released)
    return released


async def _resume(conn: Conn, ids: list[UUID]) -> int:
    now = datetime.now(UTC)
    writes = []
    event = Resume()
    for job in (await jobstore.lock_many(conn, ids)).values():
        try:
            writes.append(jobstore.Write(job, event, transition(job, event, now)))
        except IllegalTransition:  # cancelled or released meanwhile
            continue
    await jobstore.save_many(conn, writes, now)
    return len(writes)


async def _release(db: Database, gate: limits.Gate, held: int, pending: int) -> int:
    async with db.transaction() as conn:
        await gates.lock(conn, [gate])
        now = datetime.now(UTC)
        counted = await gates.counted(conn, gate, now)
        if gate.limit.kind is limits.LimitKind.RATE:
            room = limits.rate_capacity(gate.limit, counted, pending)
        else:
            room = limits.concurrency_capacity(gate.limit, counted, pending)
        if room <= 0:
            return 0
        ids = await gates.held_jobs(conn, gate.key, min(room, held))
        released = await _resume(conn, ids)
    metrics.LIMIT_RELEASES.labels(gate.label).inc(released)
    return released
