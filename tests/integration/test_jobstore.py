"""The job store against real PostgreSQL: guarded writes (the state machine's durable twin),
the direct claim and success, outbox rows, attempts, leases, and the connection pool."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.envelope import WorkEnvelope
from jobline.core.errors import IllegalTransition
from jobline.core.job import Job, JobState
from jobline.core.states import Cancel, Claim, Due, Event, Fail, Succeed, submit, transition
from jobline.pg import db as dbmod
from jobline.pg import jobstore, keystore, outbox
from jobline.pg.db import Database
from jobline.pg.keystore import ensure_tenant
from tests.support import attempts_of


@pytest.fixture
async def tenant(db):
    name = f"t-{uuid4().hex[:8]}"
    async with db.connection() as conn:
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


async def inserted(db: Database, *jobs: Job) -> list[Job]:
    now = datetime.now(UTC)
    submitted = [submit(j, now) for j in jobs]
    async with db.connection() as conn:
        await jobstore.insert(conn, submitted)
    return [t.job for t in submitted]


async def load(db: Database, job_id) -> Job:
    async with db.transaction() as conn:
        return (await jobstore.lock_many(conn, [job_id]))[job_id]


async def outbox_rows(db: Database, job_id) -> list[Any]:
    async with db.connection() as conn:
        return list(
            await conn.fetch(
                "SELECT topics, payloads, available_at, due_attempt FROM outbox"
                " WHERE job_id = $1 ORDER BY id",
                job_id,
            )
        )


async def apply(db: Database, job_id, event: Event, now: datetime | None = None):
    async with db.transaction() as conn:
        return await jobstore.apply(conn, job_id, event, now or datetime.now(UTC))


# --- new jobs -------------------------------------------------------------------------------


async def test_insert_round_trips_the_job_and_writes_one_outbox_row(db, tenant):
    (job,) = await inserted(db, new_job(tenant))
    loaded = await load(db, job.id)
    assert loaded == replace(job, created_at=loaded.created_at, run_at=loaded.run_at)
    assert loaded.payload == {"n": 1, "text": "héllo"}
    (row,) = await outbox_rows(db, job.id)
    # The "queued" event and the work message fall due together: one row, in order.
    assert row["topics"] == ["events", "jobs.default"]
    assert row["due_attempt"] is None
    assert WorkEnvelope.decode(bytes(row["payloads"][1])).attempt == 1


async def test_a_delayed_job_writes_its_work_message_apart_and_marked_to_make_it_due(db, tenant):
    later = datetime.now(UTC) + timedelta(hours=1)
    (job,) = await inserted(db, new_job(tenant, run_at=later))
    assert job.state is JobState.SCHEDULED
    rows = await outbox_rows(db, job.id)
    assert [r["topics"] for r in rows] == [["events"], ["jobs.default"]]
    assert rows[1]["available_at"] == later
    assert rows[1]["due_attempt"] == 1


async def test_a_tenant_cannot_lock_another_tenants_job(db, tenant):
    (job,) = await inserted(db, new_job(tenant))
    async with db.transaction() as conn:
        assert await jobstore.lock_many(conn, [job.id], "someone-else") == {}


async def test_a_revoked_key_inserts_nothing(db, tenant):
    async with db.transaction() as conn:
        record, _ = await keystore.create_key(conn, tenant_id=tenant, name="k", scopes=frozenset())
        await keystore.revoke_key(conn, record.id)
    submitted = submit(new_job(tenant), datetime.now(UTC))
    async with db.connection() as conn:
        result = await jobstore.insert(conn, [submitted], api_key_id=record.id)
        assert not result.authorized
        assert not await conn.fetchval("SELECT count(*) FROM jobs WHERE id = $1", submitted.job.id)


async def test_an_idempotency_key_admits_one_insert(db, tenant):
    claim = jobstore.IdempotencyClaim(
        tenant, f"k-{uuid4().hex}", "hash", [{"answer": 1}], datetime.now(UTC) + timedelta(hours=1)
    )
    first, second = (submit(new_job(tenant), datetime.now(UTC)) for _ in range(2))

    async def insert(t):
        async with db.connection() as conn:
            return await jobstore.insert(conn, [t], idempotency=claim)

    results = await asyncio.gather(insert(first), insert(second))
    assert sorted(r.inserted for r in results) == [False, True]
    async with db.connection() as conn:
        ids = [first.job.id, second.job.id]
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE id = ANY($1)", ids) == 1


# --- the locked way ---------------------------------------------------------------------


async def test_claim_then_fail_then_dead_records_attempts_and_dlq(db, tenant):
    (job,) = await inserted(db, new_job(tenant, max_attempts=1))
    claimed = await apply(db, job.id, Claim(1, "w-1", 30))
    assert claimed.after.state is JobState.RUNNING
    failed = await apply(db, job.id, Fail(1, "w-1", "KeyError", "'x'"))
    assert failed.after.state is JobState.DEAD
    async with db.connection() as conn:
        attempts = await conn.fetch(
            "SELECT attempt, worker_id, outcome, error FROM job_attempts WHERE job_id = $1",
            job.id,
        )
        purge = await conn.fetchval("SELECT purge_after FROM jobs WHERE id = $1", job.id)
    assert [(a["attempt"], a["worker_id"], a["outcome"]) for a in attempts] == [
        (1, "w-1", "failed")
    ]
    assert attempts[0]["error"]["error_class"] == "KeyError"
    assert purge is not None
    topics = [t for r in await outbox_rows(db, job.id) for t in r["topics"]]
    assert topics.count("jobs.dlq") == 1


async def test_duplicate_claims_of_one_attempt_run_it_once(db, tenant):
    """Ten concurrent claims of the same message, half the direct way, half the locked way."""
    (job,) = await inserted(db, new_job(tenant))

    async def locked(worker: str) -> bool:
        try:
            await apply(db, job.id, Claim(1, worker, 30))
        except IllegalTransition:
            return False
        return True

    async def direct(worker: str) -> bool:
        now = datetime.now(UTC)
        claim = Claim(1, worker, 30)
        async with db.connection() as conn:
            won = await jobstore.claim(conn, [(job, claim, transition(job, claim, now))], now)
        return job.id in won

    results = await asyncio.gather(
        *(locked(f"l{i}") for i in range(5)), *(direct(f"d{i}") for i in range(5))
    )
    assert results.count(True) == 1
    assert [a["attempt"] for a in await attempts_of(db, job.id)] == [1]


# --- the SQL guards: the durable twin of the state machine's ------------------------------
# Each case computes a transition the pure machine would accept on a snapshot that is out of
# date, as a racing writer would, and shows the guarded write refusing it.


async def test_the_guard_refuses_a_claim_decided_on_an_outdated_job(db, tenant):
    (job,) = await inserted(db, new_job(tenant))
    await apply(db, job.id, Cancel())  # meanwhile
    claim = Claim(1, "late", 30)
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        with pytest.raises(IllegalTransition, match="changed concurrently"):
            await jobstore.save_many(
                conn, [jobstore.Write(job, claim, transition(job, claim, now))], now
            )
    async with db.connection() as conn:  # the direct way: not claimed either
        assert await jobstore.claim(conn, [(job, claim, transition(job, claim, now))], now) == set()
    assert (await load(db, job.id)).state is JobState.CANCELLED


async def test_the_guard_refuses_a_claim_of_an_older_message_after_a_hand_back(db, tenant):
    (job,) = await inserted(db, new_job(tenant))
    await apply(db, job.id, Claim(1, "w1", 30))
    from jobline.core.states import HandBack

    await apply(db, job.id, HandBack(1, "w1"))  # queued again, attempt 1, sequence moved on
    claim = Claim(1, "w2", 30)  # the original message redelivered
    now = datetime.now(UTC)
    async with db.connection() as conn:
        assert await jobstore.claim(conn, [(job, claim, transition(job, claim, now))], now) == set()
    with pytest.raises(IllegalTransition):  # the locked way: the machine itself refuses
        await apply(db, job.id, claim)


async def test_the_guard_refuses_an_outcome_of_a_rescued_attempt(db, tenant):
    (job,) = await inserted(db, new_job(tenant))
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    claimed = (await apply(db, job.id, Claim(1, "w1", 1), t0)).after
    from jobline.core.states import LeaseExpired

    await apply(db, job.id, LeaseExpired(1))  # rescued: retrying, attempt 1 failed
    now = datetime.now(UTC)
    late = Succeed(1, "w1", {"late": True})
    async with db.connection() as conn:  # the direct way, on the worker's snapshot
        assert (
            await jobstore.succeed(conn, [(claimed, late, transition(claimed, late, now))], now)
            == set()
        )
    async with db.transaction() as conn:  # the locked way, on the same snapshot
        with pytest.raises(IllegalTransition, match="changed concurrently"):
            await jobstore.save_many(
                conn, [jobstore.Write(claimed, late, transition(claimed, late, now))], now
            )
    assert (await load(db, job.id)).state is JobState.RETRYING


async def test_the_guard_refuses_a_stale_due_flip(db, tenant):
    (job,) = await inserted(db, new_job(tenant, run_at=datetime.now(UTC) + timedelta(hours=1)))
    now = datetime.now(UTC)
    due = transition(job, Due(1), now)
    await apply(db, job.id, Due(1))  # another relay published it first
    async with db.transaction() as conn:
        with pytest.raises(IllegalTransition, match="changed concurrently"):
            await jobstore.save_many(conn, [jobstore.Write(job, Due(1), due)], now)


async def test_save_many_refuses_the_whole_batch_if_one_job_moved(db, tenant):
    jobs = await inserted(db, *(new_job(tenant) for _ in range(3)))
    await apply(db, jobs[1].id, Cancel())  # after we "read" them: we hold no lock on purpose
    now = datetime.now(UTC)
    writes = [
        jobstore.Write(j, c, transition(j, c, now)) for j in jobs for c in [Claim(1, "late", 30)]
    ]
    with pytest.raises(IllegalTransition, match="1 of 3 jobs changed concurrently"):
        async with db.transaction() as conn:
            await jobstore.save_many(conn, writes, now)
    async with db.connection() as conn:
        states = await conn.fetch(
            "SELECT id, state FROM jobs WHERE id = ANY($1)", [j.id for j in jobs]
        )
        started = await conn.fetchval(
            "SELECT count(*) FROM job_attempts WHERE job_id = ANY($1)", [j.id for j in jobs]
        )
    assert {r["id"]: r["state"] for r in states} == {
        jobs[0].id: "queued",
        jobs[1].id: "cancelled",
        jobs[2].id: "queued",
    }
    assert started == 0


# --- the direct way writes what the locked way writes ---------------------------------------


async def _snapshot(db: Database, job_id) -> tuple[Any, list[Any], list[Any]]:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT state, attempt, budget_start, run_at, started_at, finished_at, lease_owner,"
            " lease_expires_at, cancel_requested_at, sequence, result, last_error, errors,"
            " purge_after FROM jobs WHERE id = $1",
            job_id,
        )
        messages = await conn.fetch(
            "SELECT topics, payloads, available_at FROM outbox WHERE job_id = $1 ORDER BY id",
            job_id,
        )
        attempts = await conn.fetch(
            "SELECT attempt, worker_id, started_at, finished_at, outcome, error"
            " FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
            job_id,
        )
    return tuple(row), [tuple(m) for m in messages], [tuple(a) for a in attempts]


async def test_the_direct_claim_and_success_write_exactly_what_the_locked_way_writes(db, tenant):
    first = new_job(tenant)
    one, two = await inserted(db, first, new_job(tenant, run_at=first.run_at))
    t1 = datetime.now(UTC)
    claim = Claim(1, "w-1", 30)
    async with db.connection() as conn:
        assert await jobstore.claim(conn, [(one, claim, transition(one, claim, t1))], t1) == {
            one.id
        }
    await apply(db, two.id, claim, t1)
    t2 = t1 + timedelta(seconds=1)
    succeed = Succeed(1, "w-1", {"ok": True, "text": "héllo"})
    claimed = transition(one, claim, t1).job
    async with db.connection() as conn:
        written = await jobstore.succeed(
            conn, [(claimed, succeed, transition(claimed, succeed, t2))], t2
        )
    assert written == {one.id}
    await apply(db, two.id, succeed, t2)
    row_one, messages_one, attempts_one = await _snapshot(db, one.id)
    row_two, messages_two, attempts_two = await _snapshot(db, two.id)
    assert row_one[0] == "succeeded"
    assert row_one == row_two
    assert attempts_one == attempts_two
    assert len(messages_one) == len(messages_two) == 3  # submitted, started, succeeded
    for (t_a, p_a, a_a), (t_b, p_b, a_b) in zip(messages_one, messages_two, strict=True):
        assert (t_a, a_a) == (t_b, a_b)
        same = [bytes(p).replace(str(one.id).encode(), b"ID") for p in p_a]
        assert same == [bytes(p).replace(str(two.id).encode(), b"ID") for p in p_b]


# --- leases ---------------------------------------------------------------------------------


async def test_lease_renewal_and_expiry(db, tenant):
    (job,) = await inserted(db, new_job(tenant))
    await apply(db, job.id, Claim(1, "w-1", 0.01), datetime.now(UTC) - timedelta(seconds=5))
    async with db.transaction() as conn:
        assert await jobstore.renew_leases(conn, "someone-else", {job.id: 1}, 30) == {}
        assert job.id in await jobstore.expired_leases(conn, 100)
    async with db.connection() as conn:
        assert await jobstore.renew_leases(conn, "w-1", {job.id: 2}, 30) == {}  # wrong attempt
        assert await jobstore.renew_leases(conn, "w-1", {job.id: 1}, 30) == {job.id: False}
    async with db.transaction() as conn:
        assert job.id not in await jobstore.expired_leases(conn, 100)
    await apply(db, job.id, Cancel())
    async with db.connection() as conn:
        assert await jobstore.renew_leases(conn, "w-1", {job.id: 1}, 30) == {job.id: True}
    done = await apply(db, job.id, Succeed(1, "w-1", {"ok": 1}))
    assert done.after.result == {"ok": 1}


# --- the outbox -------------------------------------------------------------------------------


async def test_relays_take_disjoint_rows(db, tenant):
    await inserted(db, *(new_job(tenant) for _ in range(5)))
    first, second = await db.acquire(), await db.acquire()
    try:
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        mine = await outbox.take(first, 1000)
        theirs = await outbox.take(second, 1000)
        await two.rollback()
        await one.rollback()  # both put their rows back
    finally:
        db.release(second)
        db.release(first)
    assert mine
    assert not {r.id for r in mine} & {r.id for r in theirs}


async def test_a_jobs_later_row_waits_while_its_older_one_is_being_published(db, tenant):
    (job,) = await inserted(db, new_job(tenant))
    await apply(db, job.id, Claim(1, "w", 30))  # a second row: the "started" event
    conn = await db.acquire()
    try:
        tx = conn.transaction()
        await tx.start()
        # Relay A takes what is due: of this job only the oldest row, as its newer one waits
        # behind it even within one batch.
        taken = [r for r in await outbox.take(conn, 10_000) if r.job_id == job.id]
        assert [[t for t, _ in r.messages] for r in taken] == [["events", "jobs.default"]]
        async with db.transaction() as other:  # relay B must not take the job's next row
            assert [r for r in await outbox.take(other, 1000) if r.job_id == job.id] == []
        await tx.rollback()
    finally:
        db.release(conn)
    # Once A is done (here: rolled back) the rows go in order, one batch after the other.
    taken_in_turn = []
    for _ in range(2):
        async with db.transaction() as conn:
            taken_in_turn += [r for r in await outbox.take(conn, 10_000) if r.job_id == job.id]
    assert [[t for t, _ in r.messages] for r in taken_in_turn] == [
        ["events", "jobs.default"],
        ["events"],
    ]


async def test_a_rows_order_within_a_statement_is_kept(db, tenant):
    jobs = await inserted(db, *(new_job(tenant) for _ in range(20)))
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT key, topics FROM outbox WHERE job_id = ANY($1) ORDER BY id",
            [j.id for j in jobs],
        )
    assert [r["key"] for r in rows] == [str(j.id) for j in jobs]
    assert all(r["topics"] == ["events", "jobs.default"] for r in rows)


# --- the pool: a ping for idle connections, one failure for busy ones ------------------------


async def _kill_sessions(database_url: str, application_name: str) -> int:
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
    monkeypatch.setattr(dbmod, "IDLE_PING_SECONDS", 0.2)
    name = f"idle-ping-{uuid4().hex[:6]}"
    settings = db_settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    async with Database(settings, application_name=name) as database:
        async with database.connection() as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")
        assert await _kill_sessions(database_url, name) == 1
        await asyncio.sleep(0.3)  # idle longer than the ping threshold
        async with database.connection() as conn:
            second = await conn.fetchval("SELECT pg_backend_pid()")
    assert second != first


async def test_busy_connections_killed_cost_at_most_one_failure(db_settings, database_url):
    """Not pinged (in use a moment ago). asyncpg usually hears the server close them and
    replaces them at checkout; if one is used before that, it fails once and every pooled
    connection is replaced, so the next checkouts work."""
    name = f"busy-{uuid4().hex[:6]}"
    settings = db_settings.model_copy(update={"db_pool_size": 2, "db_max_overflow": 0})
    async with Database(settings, application_name=name) as database:
        async with database.connection() as a, database.connection() as b:
            pid = "SELECT pg_backend_pid()"
            before = {await a.fetchval(pid), await b.fetchval(pid)}
        assert await _kill_sessions(database_url, name) == 2
        failures = 0
        for _ in range(3):
            try:
                async with database.connection() as conn:
                    await conn.fetchval("SELECT 1")
            except dbmod._GONE:
                failures += 1
        assert failures <= 1
        async with database.connection() as a, database.connection() as b:
            after = {await a.fetchval(pid), await b.fetchval(pid)}
    assert not before & after
