"""The lease rescuer against real PostgreSQL: expired leases fail their attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from jobline.core.states import Claim, JobState
from jobline.pg import db, jobstore
from jobline_relay import lease_rescue, metrics
from tests.integration.relay.helpers import fresh_queue, insert_jobs, job_state, new_tenant


async def claim(engine, job_id, lease: float, at: datetime) -> None:
    async with db.transaction(engine) as conn:
        await jobstore.apply(conn, job_id, Claim("w-gone", lease), at)


def expiries(outcome: str) -> float:
    return float(metrics.LEASE_EXPIRIES.labels(outcome=outcome)._value.get())


async def test_expired_leases_retry_or_die_and_live_ones_are_left_alone(engine):
    tenant, queue = await new_tenant(engine), fresh_queue()
    retried, last, alive = await insert_jobs(engine, tenant, queue, 3, max_attempts=2)
    async with db.transaction(engine) as conn:
        await conn.execute(text("UPDATE jobs SET max_attempts = 1 WHERE id = :id"), {"id": last})
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    await claim(engine, retried, 1, long_ago)
    await claim(engine, last, 1, long_ago)
    await claim(engine, alive, 600, datetime.now(UTC))
    before = expiries("retrying"), expiries("dead")

    await lease_rescue.rescue_all(engine, batch_size=1)  # several rounds of one

    job = await job_state(engine, retried)
    assert job.state is JobState.RETRYING
    assert job.last_error is not None
    assert (job.last_error.error_class, job.last_error.message) == ("LeaseExpired", "lease expired")
    assert job.lease_owner is None
    dead = await job_state(engine, last)
    assert dead.state is JobState.DEAD
    assert (await job_state(engine, alive)).state is JobState.RUNNING
    async with engine.connect() as conn:
        topics = (
            (
                await conn.execute(
                    text("SELECT topic FROM outbox WHERE job_id = :id ORDER BY id"), {"id": last}
                )
            )
            .scalars()
            .all()
        )
        outcome = await conn.scalar(
            text("SELECT outcome FROM job_attempts WHERE job_id = :id AND attempt = 1"),
            {"id": retried},
        )
    assert "jobs.dlq" in topics
    assert outcome == "lease_expired"
    assert (expiries("retrying") - before[0], expiries("dead") - before[1]) == (1, 1)
