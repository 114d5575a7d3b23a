"""The lease rescuer: running jobs whose worker stopped renewing the lease fail their attempt.

A worker renews its lease while the handler runs; a crashed or hung worker stops. Each round
locks up to ``batch_size`` expired jobs (``SKIP LOCKED``: several relays rescue in parallel,
and a worker finishing the job right now is left alone) and applies ``LeaseExpired`` to each
in one transaction: the attempt fails with error "lease expired" and the job retries after
its backoff or goes dead (with its DLQ message) by the normal rules.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.core.states import LeaseExpired
from jobline.pg import jobstore
from jobline_relay import metrics

log = logging.getLogger(__name__)


async def rescue_batch(engine: AsyncEngine, batch_size: int) -> int:
    """One round in one transaction; returns how many jobs were rescued."""
    rescued = []
    async with engine.begin() as conn:
        now = datetime.now(UTC)
        for job_id in await jobstore.expired_leases(conn, batch_size):
            applied = await jobstore.apply(conn, job_id, LeaseExpired(), now)
            if applied is not None:
                rescued.append(applied)
    for applied in rescued:
        metrics.LEASE_EXPIRIES.labels(outcome=applied.after.state.value).inc()
        log.warning(
            "lease expired: attempt %d failed, job now %s",
            applied.before.attempt,
            applied.after.state.value,
            extra={"job_id": str(applied.after.id), "worker_id": applied.before.lease_owner},
        )
    return len(rescued)


async def rescue_all(engine: AsyncEngine, batch_size: int) -> int:
    """Rounds until one comes back short: every lease expired by now is handled."""
    total = 0
    while True:
        count = await rescue_batch(engine, batch_size)
        total += count
        if count < batch_size:
            return total
