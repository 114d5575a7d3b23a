"""The lease rescuer against real PostgreSQL: expired leases fail their attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobline.core.job import JobState
from jobline.core.states import Claim
from jobline.pg import jobstore
from jobline_relay import lease_rescue, metrics
from tests.support import fresh_queue, job_of, new_tenant, submit_many

RETENTION = timedelta(days=1)


async def claim(db, job_id, lease: float, at: datetime) -> None:
    async with db.transaction() as conn:
        await jobstore.apply(conn, job_id, Claim(1, "w-gone", lease), at)


def expiries(outcome: str) -> float:
    return float(metrics.LEASE_EXPIRIES.labels(outcome=outcome)._value.get())


async def test_expired_leases_retry_or_die_and_live_ones_are_left_alone(db):
    tenant, queue = await new_tenant(db), fresh_queue()
    retried, last, alive = await submit_many(db, tenant, queue, 3, max_attempts=2)
    async with db.connection() as conn:
        await conn.execute("UPDATE jobs SET max_attempts = 1 WHERE id = $1", last)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    await claim(db, retried, 1, long_ago)
    await claim(db, last, 1, long_ago)
    await claim(db, alive, 600, datetime.now(UTC))
    before = expiries("retrying"), expiries("dead")

    await lease_rescue.rescue_all(db, batch_size=1, retention=RETENTION)  # rounds of one

    job = await job_of(db, retried)
    assert job.state is JobState.RETRYING
    assert job.last_error is not None
    assert (job.last_error.error_class, job.last_error.message) == ("LeaseExpired", "lease expired")
    assert job.lease_owner is None
    assert (await job_of(db, last)).state is JobState.DEAD
    assert (await job_of(db, alive)).state is JobState.RUNNING
    async with db.connection() as conn:
        topics = [
            t
            for r in await conn.fetch("SELECT topics FROM outbox WHERE job_id = $1", last)
            for t in r["topics"]
        ]
        outcome = await conn.fetchval(
            "SELECT outcome FROM job_attempts WHERE job_id = $1 AND attempt = 1", retried
        )
    assert "jobs.dlq" in topics
    assert outcome == "lease_expired"
    assert (expiries("retrying") - before[0], expiries("dead") - before[1]) == (1, 1)


async def test_a_lease_renewed_in_time_is_not_rescued(db):
    """An expired lease that its worker renews before the rescuer's round stays running."""
    tenant, queue = await new_tenant(db), fresh_queue()
    [job_id] = await submit_many(db, tenant, queue, 1)
    await claim(db, job_id, 1, datetime.now(UTC) - timedelta(minutes=5))
    async with db.connection() as conn:
        await jobstore.renew_leases(conn, "w-gone", {job_id: 1}, 600)
    assert await lease_rescue.rescue_batch(db, 100, retention=RETENTION) == 0
    assert (await job_of(db, job_id)).state is JobState.RUNNING
