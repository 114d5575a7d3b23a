"""Healing from a broker that lost messages: queued jobs get their work message again.

PostgreSQL is the source of truth. A job is ``queued`` from the moment its work message is
due until a worker claims it; once the relay has published the message, only the broker
holds it. A broker can lose it (an in-memory broker restarts empty, a topic is deleted and
re-created, retention runs out while every worker is down, an unclean leader election
truncates a log), and then nothing would ever start the job. The healer writes the work
message again for queued jobs that have waited longer than ``after`` seconds, spaced out
exponentially per job; the worker's guarded claim absorbs the duplicate when the original
was only late. A relay that had to create a work topic again (the broker lost it) heals that
queue's older jobs at once instead of waiting.

What is not healed: lifecycle events and dead-letter messages the broker lost are not sent
again (PostgreSQL keeps every job's state and its dead letters, readable through the API);
schedules fire from PostgreSQL and never depended on the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime

from jobline.core import messages
from jobline.pg import jobrows, outbox
from jobline.pg.db import Database
from jobline_relay import metrics
from jobline_relay.queries import SQL

log = logging.getLogger(__name__)

# A job's re-publications are spaced after, 2 after, 4 after, ... up to 64 after.
MAX_DOUBLINGS = 6


async def heal_batch(
    db: Database,
    *,
    after: float,
    limit: int,
    queues: Collection[str] | None = None,
    before: datetime | None = None,
) -> int:
    """Write the work message of up to ``limit`` stuck queued jobs again; returns how many."""
    async with db.transaction() as conn:
        rows = await SQL.fetch(
            conn,
            "heal_queued",
            after=after,
            before=before,
            queues=list(queues) if queues is not None else None,
            max_doublings=MAX_DOUBLINGS,
            limit=limit,
        )
        if not rows:
            return 0
        now = datetime.now(UTC)
        jobs = [jobrows.job_from_row(row) for row in rows]
        await outbox.write(conn, [(messages.work(job, now), job.id) for job in jobs])
    for job in jobs:
        metrics.JOBS_HEALED.labels(queue=job.queue).inc()
    log.warning(
        "published the work message of %d queued jobs again (waiting longer than %.0fs)",
        len(jobs),
        after,
        extra={"job_ids": [str(job.id) for job in jobs[:20]]},
    )
    return len(jobs)


async def heal_all(
    db: Database,
    *,
    after: float,
    batch_size: int,
    queues: Collection[str] | None = None,
    before: datetime | None = None,
) -> int:
    """Rounds until one comes back short."""
    total = 0
    while True:
        count = await heal_batch(db, after=after, limit=batch_size, queues=queues, before=before)
        total += count
        if count < batch_size:
            return total
