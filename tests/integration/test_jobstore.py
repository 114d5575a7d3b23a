"""The job store against real PostgreSQL: guarded transitions, outbox rows, attempts."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text

from jobline import db, jobstore, outbox
from jobline.backoff import BackoffKind, BackoffPolicy
from jobline.envelope import WorkEnvelope
from jobline.errors import IllegalTransition
from jobline.keystore import ensure_tenant
from jobline.states import Cancel, Claim, Fail, Job, JobState, Succeed, submit, transition


@pytest.fixture
async def tenant(engine):
    name = f"t-{uuid4().hex[:8]}"
    async with db.transaction(engine) as conn:
        await ensure_tenant(conn, name)
    return name


def new_job(tenant: str, **changes) -> Job:
    now = datetime.now(UTC) - timedelta(seconds=1)
    fields: dict[str, Any] = {
        "id": uuid4(),
        "tenant_id": tenant,
        "type": "echo",
        "queue": "default",
        "state": JobState.QUEUED,
        "payload": {"n": 1, "text": "héllo"},
        "created_at": now,
        "run_at": now,
        "max_attempts": 2,
        "backoff": BackoffPolicy(BackoffKind.FIXED, 5.0, 5.0),
        "metadata": {"source": "test"},
    }
    fields.update(changes)
    return Job(**fields)


async def outbox_rows(engine, job_id):
    async with db.transaction(engine) as conn:
        rows = await conn.execute(
            text("SELECT topic, value, available_at FROM outbox WHERE job_id = :id ORDER BY id"),
            {"id": job_id},
        )
        return rows.all()


async def test_insert_round_trips_the_job_and_writes_its_messages(engine, tenant):
    now = datetime.now(UTC)
    submitted = submit(new_job(tenant), now)
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submitted])
    async with db.transaction(engine) as conn:
        loaded = await jobstore.lock(conn, submitted.job.id)
    assert loaded is not None
    assert loaded.payload == {"n": 1, "text": "héllo"}
    assert loaded.state is JobState.QUEUED
    assert loaded.backoff == submitted.job.backoff
    assert loaded.sequence == 1
    rows = await outbox_rows(engine, submitted.job.id)
    assert [r.topic for r in rows] == ["events", "jobs.default"]
    assert WorkEnvelope.decode(bytes(rows[1].value)).attempt == 1


async def test_a_tenant_cannot_lock_another_tenants_job(engine, tenant):
    submitted = submit(new_job(tenant), datetime.now(UTC))
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submitted])
        assert await jobstore.lock(conn, submitted.job.id, tenant_id="someone-else") is None


async def test_claim_then_fail_then_dead_records_attempts_and_dlq(engine, tenant):
    submitted = submit(new_job(tenant, max_attempts=1), datetime.now(UTC))
    job_id = submitted.job.id
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submitted])
    async with db.transaction(engine) as conn:
        claimed = await jobstore.apply(conn, job_id, Claim("w-1", 30), datetime.now(UTC))
    assert claimed is not None
    assert claimed.after.state is JobState.RUNNING
    async with db.transaction(engine) as conn:
        failed = await jobstore.apply(conn, job_id, Fail("KeyError", "'x'"), datetime.now(UTC))
    assert failed is not None
    assert failed.after.state is JobState.DEAD
    async with db.transaction(engine) as conn:
        attempts = (
            await conn.execute(
                text(
                    "SELECT attempt, worker_id, outcome, error FROM job_attempts WHERE job_id=:id"
                ),
                {"id": job_id},
            )
        ).all()
        purge = await conn.scalar(text("SELECT purge_after FROM jobs WHERE id=:id"), {"id": job_id})
    assert [(a.attempt, a.worker_id, a.outcome) for a in attempts] == [(1, "w-1", "failed")]
    assert attempts[0].error["error_class"] == "KeyError"
    assert purge is not None
    topics = [r.topic for r in await outbox_rows(engine, job_id)]
    assert topics.count("jobs.dlq") == 1


async def test_duplicate_claims_of_one_attempt_run_it_once(engine, tenant):
    """Ten concurrent claims for the same attempt (a message delivered ten times)."""
    submitted = submit(new_job(tenant), datetime.now(UTC))
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submitted])

    async def claim(worker: str) -> bool:
        async with db.transaction(engine) as conn:
            job = await jobstore.lock(conn, submitted.job.id)
            assert job is not None
            if job.state is not JobState.QUEUED or job.attempt != 0:
                return False
            await jobstore.apply(conn, job.id, Claim(worker, 30), datetime.now(UTC))
            return True

    results = await asyncio.gather(*(claim(f"w{i}") for i in range(10)))
    assert results.count(True) == 1


async def test_a_stale_save_is_refused(engine, tenant):
    submitted = submit(new_job(tenant), datetime.now(UTC))
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submitted])
    stale = submitted.job
    async with db.transaction(engine) as conn:
        await jobstore.apply(conn, stale.id, Cancel(), datetime.now(UTC))
    claim = Claim("late", 30)
    late = transition(stale, claim, datetime.now(UTC))
    async with db.transaction(engine) as conn:
        with pytest.raises(IllegalTransition, match="concurrently"):
            await jobstore.save(conn, stale, claim, late, datetime.now(UTC))


async def test_lease_renewal_and_expiry(engine, tenant):
    submitted = submit(new_job(tenant), datetime.now(UTC))
    job_id = submitted.job.id
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submitted])
        await jobstore.apply(
            conn, job_id, Claim("w-1", 0.01), datetime.now(UTC) - timedelta(seconds=5)
        )
    async with db.transaction(engine) as conn:
        assert await jobstore.renew_lease(conn, job_id, 1, "someone-else", 30) == (False, False)
        expired = await jobstore.expired_leases(conn, 100)
    assert job_id in expired
    async with db.transaction(engine) as conn:
        assert await jobstore.renew_lease(conn, job_id, 1, "w-1", 30) == (True, False)
        assert job_id not in await jobstore.expired_leases(conn, 100)
        await jobstore.apply(conn, job_id, Cancel(), datetime.now(UTC))
        assert await jobstore.renew_lease(conn, job_id, 1, "w-1", 30) == (True, True)
        done = await jobstore.apply(conn, job_id, Succeed({"ok": 1}), datetime.now(UTC))
    assert done is not None
    assert done.after.result == {"ok": 1}


async def test_outbox_claim_skips_rows_locked_by_another_relay(engine, tenant):
    now = datetime.now(UTC)
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submit(new_job(tenant), now) for _ in range(5)])
    async with db.transaction(engine) as first:
        mine = await outbox.claim(first, 1000)
        async with db.transaction(engine) as second:
            theirs = await outbox.claim(second, 1000)
        assert mine
        assert not {r.id for r in mine} & {r.id for r in theirs}
        await outbox.delete(first, [r.id for r in mine])
