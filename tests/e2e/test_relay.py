"""The outbox relay as a process: volume, delayed jobs, lease rescue."""

from __future__ import annotations

import functools
import json
import time
from datetime import UTC, datetime, timedelta

from jobline.core import topics
from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.envelope import WorkEnvelope
from jobline.core.job import JobState
from jobline.core.states import Claim
from jobline.pg import jobstore
from tests.support import (
    TopicReader,
    fresh_queue,
    job_of,
    new_tenant,
    outbox_rows_of,
    submit_many,
    wait_for,
    work_topic,
)

FAST = {
    "JOBLINE_RELAY_POLL_INTERVAL_SECONDS": "0.5",
    "JOBLINE_LEASE_RESCUE_INTERVAL_SECONDS": "0.2",
}


async def test_ten_thousand_jobs_all_arrive_on_the_work_topic(db, kafka_settings, stack):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 10_000)
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        started = time.monotonic()
        # Every message is read off the topic with no worker running: tenant fairness would
        # rightly keep all but a window of this one tenant's 10,000 parked in PostgreSQL.
        relay = stack.start("relay", env={**FAST, "JOBLINE_RELAY_FAIR_WINDOW": "0"})
        await reader.wait_for(ids, timeout=60)
        elapsed = time.monotonic() - started
    print(
        f"\n10,000 jobs: all on the topic {elapsed:.1f}s after the relay started; "
        f"duplicates {reader.duplicates(ids)}"
    )
    assert reader.seen(ids) == 10_000
    await wait_for(lambda: _empty(db, ids), 10)
    assert relay.terminate() == 0  # SIGTERM: the current batch finishes, exit 0


async def _empty(db, ids) -> bool:
    return await outbox_rows_of(db, ids) == 0


async def test_a_job_delayed_3s_is_published_within_1s_of_run_at(db, kafka_settings, stack):
    stack.start("relay", env=FAST)
    tenant, queue = await new_tenant(db), fresh_queue()
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        await reader.poll()
        run_at = datetime.now(UTC) + timedelta(seconds=3)
        [job_id] = await submit_many(db, tenant, queue, 1, run_at=run_at)
        # Local monotonic clock for the deadline: same machine as the database.
        due = time.monotonic() + (run_at - datetime.now(UTC)).total_seconds()
        assert (await job_of(db, job_id)).state is JobState.SCHEDULED
        while time.monotonic() < due - 0.05:
            await reader.poll(timeout_ms=50)
            assert reader.counts[str(job_id)] == 0, "published before run_at"
        while reader.counts[str(job_id)] == 0 and time.monotonic() < due + 2:
            await reader.poll(timeout_ms=20)
        arrived = next(t for key, _, t in reader.values if key == str(job_id))
    lateness = arrived - due
    print(f"\ndelayed job arrived {lateness * 1000:.0f} ms after run_at")
    assert 0 <= lateness + 0.05 < 1.0
    assert (await job_of(db, job_id)).state is JobState.QUEUED


async def test_an_expired_lease_retries_then_dead_letters(db, kafka_settings, stack):
    """Lease rescue: retrying with "lease expired", queued once the retry is published; on
    the last attempt, dead with a DLQ message."""
    stack.start("relay", env=FAST)
    tenant, queue = await new_tenant(db), fresh_queue()
    dlq = topics.dlq_topic(kafka_settings.topic_prefix)
    async with (
        TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as work,
        TopicReader(kafka_settings, dlq) as dead_letters,
    ):
        [job_id] = await submit_many(
            db, tenant, queue, 1, max_attempts=2, backoff=BackoffPolicy(BackoffKind.FIXED, 1, 1)
        )
        for attempt in (1, 2):
            # A worker claims the attempt, then dies: its 0.3 s lease is never renewed.
            await wait_for(functools.partial(_has_attempt, work, job_id, attempt), 10)
            async with db.transaction() as conn:
                await jobstore.apply(conn, job_id, Claim(attempt, "w-dead", 0.3), datetime.now(UTC))
            if attempt == 1:
                await wait_for(lambda: _state_is(db, job_id, JobState.RETRYING), 10)
                job = await job_of(db, job_id)
                assert job.last_error is not None
                assert job.last_error.message == "lease expired"
                assert job.last_error.outcome.value == "lease_expired"
                # Fixed backoff of 1 s, then the relay publishes attempt 2: queued.
                await wait_for(lambda: _state_is(db, job_id, JobState.QUEUED), 10)
        await wait_for(lambda: _state_is(db, job_id, JobState.DEAD), 10)
        await wait_for(lambda: _polled_key(dead_letters, job_id), 10)
    job = await job_of(db, job_id)
    assert [e.message for e in job.errors] == ["lease expired", "lease expired"]
    [message] = [value for key, value, _ in dead_letters.values if key == str(job_id)]
    body = json.loads(message)
    assert len(body["errors"]) == 2
    assert {e["message"] for e in body["errors"]} == {"lease expired"}


async def _state_is(db, job_id, state: JobState) -> bool:
    return (await job_of(db, job_id)).state is state


async def _has_attempt(reader: TopicReader, job_id, attempt: int) -> bool:
    await reader.poll(timeout_ms=50)
    return any(
        key == str(job_id) and WorkEnvelope.decode(value).attempt == attempt
        for key, value, _ in reader.values
    )


async def _polled_key(reader: TopicReader, job_id) -> bool:
    await reader.poll(timeout_ms=50)
    return reader.counts[str(job_id)] > 0
