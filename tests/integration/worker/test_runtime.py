"""The worker runtime in-process against real PostgreSQL and the broker.

Each test uses its own queue (so its own work topic and consumer group); the real outbox relay
runs in-process (``relay``) where a test needs the outbox published.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from jobline.broker import kafka
from jobline.core import topics
from jobline.core.job import JobState
from jobline.core.states import Cancel
from jobline.pg import jobstore
from jobline_worker import NonRetryable, Retry, Worker
from jobline_worker.context import JobContext
from jobline_worker.runtime import Runtime
from tests.integration.worker.conftest import worker_settings
from tests.support import (
    TopicReader,
    attempts_of,
    dlq_bodies,
    insert_jobs,
    job_of,
    make_job,
    new_tenant,
    states_of,
    wait_for,
    wait_states,
)

RUNS: Counter[str] = Counter()
ACTIVE = {"now": 0, "max": 0}

app = Worker()


class Typed(BaseModel):
    n: int


@app.job("echo")
async def echo(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    RUNS[str(ctx.job_id)] += 1
    return payload


@app.job("nonretryable")
async def nonretryable(ctx: JobContext, payload: dict[str, Any]) -> None:
    raise NonRetryable("cannot ever work")


@app.job("retry-later")
async def retry_later(ctx: JobContext, payload: dict[str, Any]) -> None:
    raise Retry(after=30)


@app.job("slow", timeout=0.3)
async def slow(ctx: JobContext, payload: dict[str, Any]) -> None:
    await asyncio.sleep(10)


@app.job("wait")
async def wait(ctx: JobContext, payload: dict[str, Any]) -> str:
    await ctx.progress(0.5, "halfway")
    await asyncio.sleep(payload.get("seconds", 30))
    return "done"


@app.job("blocking")
def blocking(ctx: JobContext, payload: dict[str, Any]) -> int:
    ACTIVE["now"] += 1
    ACTIVE["max"] = max(ACTIVE["max"], ACTIVE["now"])
    try:
        time.sleep(0.2)
    finally:
        ACTIVE["now"] -= 1
    return ctx.attempt


@app.job("big")
async def big(ctx: JobContext, payload: dict[str, Any]) -> str:
    return "x" * 100_000


@app.job("typed", model=Typed)
async def typed(ctx: JobContext, payload: Typed) -> int:
    return payload.n * 2


@pytest.fixture
async def tenant(db):
    return await new_tenant(db)


@pytest.fixture
def queue() -> str:
    return f"w{uuid4().hex[:10]}"


@pytest.fixture
def run_worker(database_url, kafka_settings):
    @asynccontextmanager
    async def start(queue: str, concurrency: int = 8, **changes: Any) -> AsyncIterator[Runtime]:
        settings = worker_settings(database_url, kafka_settings, **changes)
        runtime = Runtime(
            settings, app, [queue], concurrency, consumer_options=settings.consumer_options()
        )
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop()

    return start


async def test_jobs_run_and_record_results_and_events(db, tenant, queue, relay, run_worker):
    jobs = [make_job(tenant, "echo", queue, {"i": i}) for i in range(20)]
    jobs.append(make_job(tenant, "typed", queue, {"n": 21}))
    ids = await insert_jobs(db, jobs)
    async with run_worker(queue):
        await wait_states(db, ids, "succeeded")
    assert (await job_of(db, ids[3])).result == {"i": 3}
    assert (await job_of(db, ids[-1])).result == 42
    assert all(RUNS[str(i)] == 1 for i in ids[:-1])
    attempts = await attempts_of(db, ids[0])
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "succeeded")]


async def test_the_same_message_five_times_runs_once(db, tenant, queue, kafka_settings, run_worker):
    (job_id,) = await insert_jobs(db, [make_job(tenant, "echo", queue, {"dup": True})])
    job = await job_of(db, job_id)
    topic = topics.work_topic(kafka_settings.topic_prefix, queue)
    await kafka.ensure_topics(kafka_settings, [topic], partitions=2)
    producer = kafka.make_producer(kafka_settings)
    await producer.start()
    try:
        for _ in range(5):
            await producer.send_and_wait(
                topic, key=str(job_id).encode(), value=job.envelope(1).encode()
            )
    finally:
        await producer.stop()
    async with run_worker(queue) as runtime:
        await wait_states(db, [job_id], "succeeded")
        await wait_for(lambda: _all_decided(runtime), 10)
    assert RUNS[str(job_id)] == 1


async def _all_decided(runtime: Runtime) -> bool:
    return runtime.consumers[0].offsets.undecided() == 0 and runtime.slots.used == 0


async def test_poison_goes_to_the_dlq_topic_and_jobs_behind_it_run(
    db, tenant, queue, kafka_settings, run_worker
):
    topic = topics.work_topic(kafka_settings.topic_prefix, queue)
    await kafka.ensure_topics(kafka_settings, [topic], partitions=2)
    (job_id,) = await insert_jobs(db, [make_job(tenant, "echo", queue, {"after": "poison"})])
    job = await job_of(db, job_id)
    key = str(job_id).encode()  # same key, so the same partition: the job is behind the poison
    missing = make_job(tenant, "echo", queue).envelope(1).encode()  # a job that does not exist
    producer = kafka.make_producer(kafka_settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key, value=b"\xff\xfenot json")
        await producer.send_and_wait(topic, key=key, value=missing)
        await producer.send_and_wait(topic, key=key, value=job.envelope(1).encode())
    finally:
        await producer.stop()
    dlq = topics.dlq_topic(kafka_settings.topic_prefix)
    async with TopicReader(kafka_settings, dlq) as reader, run_worker(queue):
        await wait_states(db, [job_id], "succeeded")
        mine = lambda records: [  # noqa: E731
            b for b in dlq_bodies(records) if b.get("source", {}).get("topic") == topic
        ]
        await reader.until(lambda records: len(mine(records)) == 2)
    undecodable, no_job = mine(reader.records)
    assert undecodable["reason"] == "undecodable"
    assert undecodable["value_encoding"] == "base64"
    assert undecodable["source"]["offset"] < no_job["source"]["offset"]
    assert no_job["reason"] == "no_such_job"
    assert json.loads(no_job["value"])["type"] == "echo"


async def test_unknown_type_and_non_retryable_and_oversize_go_dead_at_once(
    db, tenant, queue, relay, run_worker
):
    ids = await insert_jobs(
        db,
        [
            make_job(tenant, "no-such-handler", queue),
            make_job(tenant, "nonretryable", queue),
            make_job(tenant, "big", queue),
            make_job(tenant, "typed", queue, {"n": "not a number"}),
        ],
    )
    async with run_worker(queue):
        await wait_states(db, ids, "dead")
    classes = [(await job_of(db, i)).errors[-1].error_class for i in ids]
    assert classes == ["UnknownJobType", "NonRetryable", "ResultTooLarge", "PayloadInvalid"]
    assert [len(await attempts_of(db, i)) for i in ids] == [1, 1, 1, 1]


async def test_retry_after_and_timeout(db, tenant, queue, relay, run_worker):
    retry_id, slow_id = await insert_jobs(
        db, [make_job(tenant, "retry-later", queue), make_job(tenant, "slow", queue)]
    )
    async with run_worker(queue):
        await wait_states(db, [retry_id], "retrying")
        retrying = await job_of(db, retry_id)
        delay = (retrying.run_at - retrying.errors[-1].finished_at).total_seconds()
        assert delay == pytest.approx(30, abs=0.5)
        await wait_for(lambda: _attempt_outcome(db, slow_id, 1), 10)
    assert await _attempt_outcome(db, slow_id, 1) == "timeout"
    assert (await job_of(db, slow_id)).errors[0].error_class == "HandlerTimeout"


async def _attempt_outcome(db, job_id, attempt) -> str | None:
    rows = await attempts_of(db, job_id)
    return next((a["outcome"] for a in rows if a["attempt"] == attempt), None)


async def test_cancel_while_running_stops_the_handler(db, tenant, queue, relay, run_worker):
    (job_id,) = await insert_jobs(db, [make_job(tenant, "wait", queue)])
    async with run_worker(queue, worker_lease_seconds=0.6) as runtime:
        await wait_states(db, [job_id], "running")
        await wait_for(lambda: _progress(db, job_id), 5)
        async with db.transaction() as conn:
            await jobstore.apply(conn, job_id, Cancel(), datetime.now(UTC))
        await wait_states(db, [job_id], "cancelled", timeout=5)
        assert not runtime.running
    assert await _attempt_outcome(db, job_id, 1) == "cancelled"
    assert (await _progress(db, job_id))["message"] == "halfway"


async def _progress(db, job_id):
    async with db.connection() as conn:
        metadata = await conn.fetchval("SELECT metadata FROM jobs WHERE id = $1", job_id)
    return metadata.get("progress")


async def test_a_lost_lease_drops_the_outcome(db, tenant, queue, relay, run_worker):
    (job_id,) = await insert_jobs(db, [make_job(tenant, "wait", queue, {"seconds": 30})])
    async with run_worker(queue, worker_lease_seconds=0.6) as runtime:
        await wait_states(db, [job_id], "running")
        # Someone else took the job over (as after a rescue and a new claim).
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET lease_owner = 'another-worker', sequence = sequence + 1"
                " WHERE id = $1",
                job_id,
            )
        await wait_for(lambda: _no_running(runtime), 5)
    job = await job_of(db, job_id)
    assert job.state is JobState.RUNNING
    assert job.lease_owner == "another-worker"
    await _not_rescuable(db, job_id)


async def _not_rescuable(db, job_id) -> None:
    """Tests share one database: a running job left with an expired lease would be rescued
    (and counted) by the lease rescuer's own tests. Give it a lease far in the future."""
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET lease_expires_at = now() + interval '1 day' WHERE id = $1", job_id
        )


async def _no_running(runtime: Runtime) -> bool:
    return not runtime.running and runtime.slots.used == 0


async def test_stop_hands_back_unfinished_jobs_without_charging_an_attempt(
    db, tenant, queue, relay, run_worker
):
    quick, stuck = await insert_jobs(
        db,
        [
            make_job(tenant, "wait", queue, {"seconds": 0.3}),
            make_job(tenant, "wait", queue, {"seconds": 60}),
        ],
    )
    async with run_worker(queue, worker_shutdown_grace_seconds=1.5):
        await wait_states(db, [quick, stuck], "running")
        started = time.monotonic()
    assert time.monotonic() - started < 6
    assert (await job_of(db, quick)).state is JobState.SUCCEEDED
    back = await job_of(db, stuck)
    assert back.state is JobState.QUEUED
    assert back.attempts_used == 0
    assert back.attempt == 1
    assert await _attempt_outcome(db, stuck, 1) == "handed_back"


async def test_in_flight_stays_within_concurrency(db, tenant, queue, relay, run_worker):
    ACTIVE["max"] = 0
    ids = await insert_jobs(db, [make_job(tenant, "blocking", queue) for _ in range(12)])
    async with run_worker(queue, concurrency=3) as runtime:
        peak = 0

        async def done() -> bool:
            nonlocal peak
            peak = max(peak, runtime.slots.used)
            return set((await states_of(db, ids)).values()) == {"succeeded"}

        await wait_for(done, 30, 0.02)
    assert 1 <= ACTIVE["max"] <= 3
    assert peak <= 3


async def _publish_first_attempts(kafka_settings, queue: str, db, job_ids) -> None:
    """Write the jobs' work messages straight to the topic, so one fetch sees them all."""
    topic = topics.work_topic(kafka_settings.topic_prefix, queue)
    await kafka.ensure_topics(kafka_settings, [topic], partitions=2)
    producer = kafka.make_producer(kafka_settings)
    await producer.start()
    try:
        for job_id in job_ids:
            job = await job_of(db, job_id)
            await producer.send_and_wait(
                topic, key=str(job_id).encode(), value=job.envelope(1).encode()
            )
    finally:
        await producer.stop()


async def test_a_claim_batch_that_fails_is_retried_message_by_message(
    db, tenant, queue, kafka_settings, *, run_worker, monkeypatch
):
    """One message whose claim always fails must not hold back the others of its batch: they
    run, and only its own offset stays undecided."""
    monkeypatch.setattr("jobline_worker.claims.RETRY_SECONDS", (0.05, 0.05))
    ids = await insert_jobs(db, [make_job(tenant, "echo", queue) for _ in range(10)])
    bad = ids[4]
    await _publish_first_attempts(kafka_settings, queue, db, ids)
    batches_with_bad: list[int] = []
    async with run_worker(queue, concurrency=16) as runtime:
        assert runtime.claimer is not None
        claim = runtime.claimer._claim

        async def failing_claim(qc, deliveries):
            if any(d.envelope.id == bad for d in deliveries):
                batches_with_bad.append(len(deliveries))
                raise RuntimeError("this job cannot be claimed")
            return await claim(qc, deliveries)

        monkeypatch.setattr(runtime.claimer, "_claim", failing_claim)
        good = [i for i in ids if i != bad]
        await wait_states(db, good, "succeeded")
        await wait_for(lambda: _no_running(runtime), 10)
        assert runtime.consumers[0].offsets.undecided() == 1
    assert max(batches_with_bad) > 1  # it came in a batch, which was split
    assert batches_with_bad.count(1) == 3  # then alone: the first try and two retries
    assert (await job_of(db, bad)).state is JobState.QUEUED
    assert all(RUNS[str(i)] == 1 for i in good)


async def test_outcomes_are_grouped_and_a_failing_group_is_recorded_one_by_one(
    db, tenant, queue, kafka_settings, *, run_worker, monkeypatch
):
    ids = await insert_jobs(db, [make_job(tenant, "echo", queue) for _ in range(30)])
    bad = ids[7]
    await _publish_first_attempts(kafka_settings, queue, db, ids)
    groups: list[int] = []
    async with run_worker(queue, concurrency=32) as runtime:
        record = runtime.completer._record

        async def failing_group(group):
            groups.append(len(group))
            if any(o.execution.job.id == bad for o in group):
                raise RuntimeError("this outcome cannot be recorded")
            await record(group)

        monkeypatch.setattr(runtime.completer, "_record", failing_group)
        good = [i for i in ids if i != bad]
        await wait_states(db, good, "succeeded")
        await wait_for(lambda: _no_running(runtime), 10)
    assert max(groups) > 1  # outcomes that finished together shared a transaction
    # The bad outcome was given up after its retries: the job stays running under our lease
    # (the relay's lease rescuer re-queues it), nothing else was lost.
    job = await job_of(db, bad)
    assert job.state is JobState.RUNNING
    await _not_rescuable(db, bad)
    assert all(RUNS[str(i)] == 1 for i in ids)
    assert [(a["attempt"], a["outcome"]) for a in await attempts_of(db, ids[0])] == [
        (1, "succeeded")
    ]
