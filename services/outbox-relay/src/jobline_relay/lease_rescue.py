"""The lease rescuer: running jobs whose worker stopped renewing the lease fail their attempt.

A worker renews its lease while the handler runs; a crashed or hung worker stops. Each round
locks up to ``batch_size`` expired jobs (``SKIP LOCKED``: several relays rescue in parallel,
and a worker finishing the job right now is left alone) and applies ``LeaseExpired`` to each
in one transaction: the attempt fails with error "lease expired" and the job retries after
its backoff or goes dead (with its DLQ message) by the normal rules.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from jobline.core.errors import IllegalTransition
from jobline.core.states import LeaseExpired, transition
from jobline.pg import jobstore
from jobline.pg.db import Database
from jobline_relay import metrics

log = logging.getLogger(__name__)


async def rescue_batch(db: Database, batch_size: int, *, retention: timedelta) -> int:
    """One round in one transaction; returns how many jobs were rescued."""
    writes = []
    async with db.transaction() as conn:
        now = datetime.now(UTC)
        ids = await jobstore.expired_leases(conn, batch_size)
        for job in (await jobstore.lock_many(conn, ids)).values():
            event = LeaseExpired(job.attempt)
            try:
                writes.append(jobstore.Write(job, event, transition(job, event, now)))
            except IllegalTransition:  # renewed or finished since the scan: not expired
                continue
        await jobstore.save_many(conn, writes, now, retention=retention)
    for write in writes:
        metrics.LEASE_EXPIRIES.labels(outcome=write.after.state.value).inc()
        log.warning(
            "lease expired: attempt %d failed, job now %s",
            write.before.attempt,
            write.after.state.value,
            extra={"job_id": str(write.after.id), "worker_id": write.before.lease_owner},
        )
    return len(writes)


async def rescue_all(db: Database, batch_size: int, *, retention: timedelta) -> int:
    """Rounds until one comes back short: every lease expired by now is handled."""
    total = 0
    while True:
        count = await rescue_batch(db, batch_size, retention=retention)
        total += count
        if count < batch_size:
            return total
