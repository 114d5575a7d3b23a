"""The job store against real PostgreSQL: guarded transitions, outbox rows, attempts."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text

from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.envelope import WorkEnvelope
from jobline.core.errors import IllegalTransition
from jobline.core.states import (
    Cancel,
    Claim,
    Due,
    Event,
    Fail,
    Job,
    JobState,
    Succeed,
    submit,
    transition,
)
from jobline.pg import db, jobstore, outbox
from jobline.pg.keystore import ensure_tenant


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


# --- the set-based path (lock_many / save_many) ---------------------------------------------

_ROW_SQL = (
    "SELECT state, attempt, budget_start, run_at, started_at, finished_at, lease_owner,"
    " lease_expires_at, cancel_requested_at, sequence, result, last_error, errors, purge_after"
    " FROM jobs WHERE id = :id"
)


async def _snapshot(engine, job_id) -> tuple[Any, list[Any], list[Any]]:
    """The job's row, its outbox rows and attempt rows, without ids and clock columns."""
    async with db.transaction(engine) as conn:
        row = (await conn.execute(text(_ROW_SQL), {"id": job_id})).one()
        messages = (
            await conn.execute(
                text(
                    "SELECT topic, key, value, available_at FROM outbox"
                    " WHERE job_id = :id ORDER BY id"
                ),
                {"id": job_id},
            )
        ).all()
        attempts = (
            await conn.execute(
                text(
                    "SELECT attempt, worker_id, started_at, finished_at, outcome, error"
                    " FROM job_attempts WHERE job_id = :id ORDER BY attempt"
                ),
                {"id": job_id},
            )
        ).all()
    return tuple(row), [tuple(m) for m in messages], [tuple(a) for a in attempts]


async def test_save_many_writes_exactly_what_save_writes(engine, tenant):
    """Claim then fail (retry, dead) and succeed: the batch path and the one-by-one path
    leave identical rows, outbox messages (in order) and attempt records."""
    t0 = datetime.now(UTC)
    steps: list[Event] = [
        Claim("w-1", 30),
        Fail("KeyError", "'x'"),  # -> retrying (max_attempts=2)
    ]
    pairs = []
    for kind in ("dead", "succeeded"):
        one = new_job(tenant)
        many = new_job(tenant, created_at=one.created_at, run_at=one.run_at)
        pairs.append((kind, one, many))
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submit(j, t0) for _, one, many in pairs for j in (one, many)])
    # The same events at the same instants for each pair: one through save, one through
    # save_many (batched with the other pair's job).
    script: dict[str, list[Event]] = {
        "dead": [*steps, Due(), Claim("w-2", 30), Fail("KeyError", "'y'")],
        "succeeded": [Claim("w-1", 30), Succeed({"ok": True, "text": "héllo"})],
    }
    for step in range(max(len(s) for s in script.values())):
        now = t0 + timedelta(seconds=step + 1)
        writes = []
        async with db.transaction(engine) as conn:
            locked = await jobstore.lock_many(conn, [many.id for _, _, many in pairs])
            for kind, one, many in pairs:
                if step >= len(script[kind]):
                    continue
                event = script[kind][step]
                job = await jobstore.lock(conn, one.id)
                assert job is not None
                await jobstore.save(conn, job, event, transition(job, event, now), now)
                before = locked[many.id]
                writes.append(jobstore.Write(before, event, transition(before, event, now)))
            await jobstore.save_many(conn, writes, now)
    for kind, one, many in pairs:
        row_one, messages_one, attempts_one = await _snapshot(engine, one.id)
        row_many, messages_many, attempts_many = await _snapshot(engine, many.id)
        assert row_one[0] == kind
        assert row_one == row_many
        assert [m[0] for m in messages_one] == [m[0] for m in messages_many]
        assert len(messages_one) == len(messages_many) >= 4
        # The same messages, byte for byte once the job ids are aligned.
        for (t1, _, v1, a1), (t2, _, v2, a2) in zip(messages_one, messages_many, strict=True):
            assert (t1, a1) == (t2, a2)
            assert bytes(v1).replace(str(one.id).encode(), b"ID") == bytes(v2).replace(
                str(many.id).encode(), b"ID"
            )
        assert attempts_one == attempts_many
        assert attempts_one[-1][4] == ("failed" if kind == "dead" else "succeeded")


async def test_save_many_refuses_the_whole_batch_if_one_job_moved(engine, tenant):
    now = datetime.now(UTC)
    jobs = [new_job(tenant) for _ in range(3)]
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submit(j, now) for j in jobs])
    async with db.transaction(engine) as conn:
        before = await jobstore.lock_many(conn, [j.id for j in jobs])
    # Someone cancels the middle job after we read it (we hold no lock here on purpose).
    async with db.transaction(engine) as conn:
        await jobstore.apply(conn, jobs[1].id, Cancel(), datetime.now(UTC))
    claim = Claim("late", 30)
    writes = [
        jobstore.Write(before[j.id], claim, transition(before[j.id], claim, now)) for j in jobs
    ]
    with pytest.raises(IllegalTransition, match="1 of 3 jobs changed concurrently"):
        async with db.transaction(engine) as conn:
            await jobstore.save_many(conn, writes, now)
    async with db.transaction(engine) as conn:
        states = {
            j.id: (await conn.scalar(text("SELECT state FROM jobs WHERE id = :id"), {"id": j.id}))
            for j in jobs
        }
        started = await conn.scalar(
            text("SELECT count(*) FROM job_attempts WHERE job_id = ANY(:ids)"),
            {"ids": [j.id for j in jobs]},
        )
    assert states == {jobs[0].id: "queued", jobs[1].id: "cancelled", jobs[2].id: "queued"}
    assert started == 0


async def test_outbox_write_many_keeps_the_given_order(engine, tenant):
    now = datetime.now(UTC)
    submitted = [submit(new_job(tenant), now) for _ in range(20)]
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, submitted)
        rows = (
            await conn.execute(
                text("SELECT key, topic FROM outbox WHERE job_id = ANY(:ids) ORDER BY id"),
                {"ids": [t.job.id for t in submitted]},
            )
        ).all()
    expected = [(str(t.job.id), m.topic) for t in submitted for m in t.messages]
    assert [(r.key, r.topic) for r in rows] == expected


# --- the pool: no pre-ping on busy connections, a ping on idle ones -------------------------


async def _kill_sessions(database_url: str, application_name: str) -> int:
    import asyncpg

    from jobline.settings import plain_url

    conn = await asyncpg.connect(plain_url(database_url))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = $1",
                application_name,
            )
        )
    finally:
        await conn.close()


async def test_a_connection_killed_while_idle_in_the_pool_is_replaced_at_checkout(
    db_settings, database_url, monkeypatch
):
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.2)
    name = f"idle-ping-{uuid4().hex[:6]}"
    engine = db.create_engine(
        db_settings.model_copy(update={"db_pool_size": 1}), application_name=name
    )
    try:
        async with db.transaction(engine) as conn:
            first = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert await _kill_sessions(database_url, name) == 1
        await asyncio.sleep(0.3)  # idle longer than the ping threshold
        async with db.transaction(engine) as conn:
            second = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert second != first
    finally:
        await engine.dispose()


async def test_a_busy_connection_killed_fails_once_and_the_pool_recovers(db_settings, database_url):
    """Not pinged (it was in use a moment ago): the first statement fails as a disconnect,
    SQLAlchemy invalidates the pool, and the next checkout gets a working connection."""
    from sqlalchemy.exc import DBAPIError

    name = f"busy-{uuid4().hex[:6]}"
    engine = db.create_engine(
        db_settings.model_copy(update={"db_pool_size": 2}), application_name=name
    )
    try:
        async with db.transaction(engine) as a, db.transaction(engine) as b:
            await a.scalar(text("SELECT 1"))
            await b.scalar(text("SELECT 1"))
        assert await _kill_sessions(database_url, name) == 2
        with pytest.raises(DBAPIError) as caught:
            async with db.transaction(engine) as conn:
                await conn.scalar(text("SELECT 1"))
        assert caught.value.connection_invalidated
        async with db.transaction(engine) as a, db.transaction(engine) as b:
            assert await a.scalar(text("SELECT 1")) == 1
            assert await b.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
