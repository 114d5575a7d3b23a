"""Claiming a job that a concurrency or rate limit governs (jobline.core.limits).

One transaction per job: lock its row, then each of its gates (in key order), read the clock
only then, and count each gate. If every gate has room the claim is written with the start
recorded in its gates (so the next claim through them counts it); if one is full the job is
held (``Hold``: ``scheduled``, waiting on that gate, no work message) and the relay releases
it when the gate frees (jobline_relay.gates). Its message's offset is decided either way.

The clock is read after the locks: a claim that waited for a gate stamps its start after the
start it waited for, so the attempts' own timestamps never show more running (or started in
a window) than the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from jobline.core import limits
from jobline.core.errors import IllegalTransition
from jobline.core.job import Job
from jobline.core.states import Claim, Hold, transition
from jobline.pg import gates, jobstore, typelimits
from jobline.pg.db import Database
from jobline_worker import metrics

log = logging.getLogger("jobline.worker")

HELD: Final = "held"
STALE: Final = "stale"


async def claim(
    db: Database,
    job_id: UUID,
    attempt: int,
    declared: Sequence[limits.Limit],
    *,
    worker_id: str,
    lease: float,
) -> Job | str | None:
    """The running job if claimed; HELD or STALE (its offset is decided either way); None
    if the job does not exist.

    ``declared`` are the handler's limits. The tenant's own override is read here, in the
    claim's transaction, not from the worker's cache: a job is never held under limits the
    tenant has just changed (the relay releases the jobs held under old ones, and their
    claims must see the new ones, however fresh the cache).
    """
    async with db.transaction() as conn:
        job = (await jobstore.lock_many(conn, {job_id})).get(job_id)
        if job is None:
            return None
        override = await typelimits.override_for(conn, job.tenant_id, job.type)
        start_limits = limits.effective(declared, override)
        job_gates = limits.gates(start_limits, job.type, job.tenant_id, job.payload)
        await gates.lock(conn, job_gates)
        now = datetime.now(UTC)
        event = Claim(attempt, worker_id, lease)
        try:
            claimed = transition(job, event, now)
        except IllegalTransition:  # duplicate or stale
            return STALE
        for gate in job_gates:
            counted = await gates.counted(conn, gate, now)
            if limits.admits(gate.limit, counted):
                continue
            hold = Hold(attempt, gate.key)
            write = jobstore.Write(job, hold, transition(job, hold, now))
            await jobstore.save_many(conn, [write], now)
            await gates.hold(conn, job.id, gate)
            metrics.HELD.labels(gate.label).inc()
            log.debug("held by a limit", extra={"job_id": str(job.id), "gate": gate.key})
            return HELD
        await jobstore.save_many(conn, [jobstore.Write(job, event, claimed)], now)
        await gates.admit(conn, job.id, job_gates, now)
        # A claim that held a job under limits changed a moment later noted the old limit;
        # each admission notes the one in force, so the relay releases by it.
        for gate in job_gates:
            await gates.note(conn, gate)
        return claimed.job
