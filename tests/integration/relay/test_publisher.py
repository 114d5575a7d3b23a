"""One batch of the relay against real PostgreSQL and the broker (in-process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from jobline.broker.kafka import make_producer
from jobline.core import cloudevent as events
from jobline.core.envelope import WorkEnvelope
from jobline.core.states import JobState
from jobline.pg import db
from jobline_relay.publisher import Publisher
from tests.integration.relay.helpers import (
    TopicReader,
    fresh_queue,
    insert_jobs,
    job_state,
    new_tenant,
    outbox_rows_of,
    work_topic,
)


@pytest.fixture
async def producer(kafka_settings) -> AsyncIterator[Any]:
    producer = make_producer(kafka_settings)
    await producer.start()
    yield producer
    await producer.stop()


def publisher_for(engine, producer, kafka_settings, batch_size: int = 10_000) -> Publisher:
    return Publisher(engine, producer, kafka_settings, batch_size=batch_size, publish_timeout=10)


async def drain(publisher: Publisher) -> int:
    total = 0
    while (result := await publisher.publish_batch()).published:
        total += result.published
    return total


async def test_a_batch_publishes_work_and_events_then_deletes_the_rows(
    engine, kafka_settings, producer
):
    tenant, queue = await new_tenant(engine), fresh_queue()
    ids = await insert_jobs(engine, tenant, queue, 50)
    publisher = publisher_for(engine, producer, kafka_settings)

    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        assert await drain(publisher) >= 100  # a work message and a "queued" event per job
        await reader.wait_for(ids, timeout=10)

    assert await outbox_rows_of(engine, ids) == 0
    envelopes = [WorkEnvelope.decode(value) for _, value, _ in reader.values]
    assert {e.id for e in envelopes} == set(ids)
    assert {e.attempt for e in envelopes} == {1}
    assert reader.duplicates(ids) == 0


async def test_a_failed_publish_rolls_back_and_keeps_every_row(engine, kafka_settings, producer):
    tenant, queue = await new_tenant(engine), fresh_queue()
    ids = await insert_jobs(engine, tenant, queue, 20)

    class BrokenProducer:
        client = producer.client

        async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionError("broker gone"))
            return future

    broken = publisher_for(engine, BrokenProducer(), kafka_settings)
    with pytest.raises(ConnectionError, match="broker gone"):
        await broken.publish_batch()
    assert await outbox_rows_of(engine, ids) == 40

    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        await drain(publisher_for(engine, producer, kafka_settings))
        await reader.wait_for(ids, timeout=10)
    assert await outbox_rows_of(engine, ids) == 0


async def test_replicas_never_claim_the_same_rows(engine, kafka_settings, producer):
    """While one relay's batch is open, another relay skips its rows (SKIP LOCKED)."""
    tenant, queue = await new_tenant(engine), fresh_queue()
    ids = await insert_jobs(engine, tenant, queue, 30)
    release = asyncio.Event()
    holding = asyncio.Event()

    class SlowProducer:
        client = producer.client

        async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            holding.set()
            await release.wait()
            ack: asyncio.Future[Any] = await producer.send(*args, **kwargs)
            return ack

    slow = publisher_for(engine, SlowProducer(), kafka_settings, batch_size=20)
    fast = publisher_for(engine, producer, kafka_settings)
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        slow_batch = asyncio.create_task(slow.publish_batch())
        await holding.wait()
        other = await drain(fast)  # everything except the 20 rows the slow batch holds
        release.set()
        assert (await slow_batch).published == 20
        await reader.wait_for(ids, timeout=10)
    assert other >= 40  # 60 rows of ours (+ any other test's leftovers) minus the 20 held
    assert reader.duplicates(ids) == 0


async def test_a_delayed_job_waits_then_becomes_queued_with_its_event(
    engine, kafka_settings, producer
):
    tenant, queue = await new_tenant(engine), fresh_queue()
    run_at = datetime.now(UTC) + timedelta(seconds=1.5)
    [job_id] = await insert_jobs(engine, tenant, queue, 1, run_at=run_at)
    assert (await job_state(engine, job_id)).state is JobState.SCHEDULED
    publisher = publisher_for(engine, producer, kafka_settings)

    await drain(publisher)  # only the "scheduled" event is due
    assert (await job_state(engine, job_id)).state is JobState.SCHEDULED
    assert await outbox_rows_of(engine, [job_id]) == 1

    await asyncio.sleep((run_at - datetime.now(UTC)).total_seconds() + 0.01)
    result = await publisher.publish_batch()
    assert result.made_due >= 1
    job = await job_state(engine, job_id)
    assert job.state is JobState.QUEUED
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT topic, value FROM outbox WHERE job_id = :id"), {"id": job_id}
            )
        ).all()
    # The "queued" CloudEvent was written by the same transaction, for a later batch.
    assert [r.topic for r in rows] == ["events"]
    queued = events.decode(bytes(rows[0].value))
    assert queued.get_attributes()["type"] == "jobline.job.queued"
    assert events.data_of(queued)["state"] == "queued"
    await drain(publisher)
    assert await outbox_rows_of(engine, [job_id]) == 0


async def test_a_stale_work_message_does_not_move_the_job(engine, kafka_settings, producer):
    """A work row for an attempt other than the next one is published but flips nothing."""
    tenant, queue = await new_tenant(engine), fresh_queue()
    run_at = datetime.now(UTC) + timedelta(hours=1)
    [job_id] = await insert_jobs(engine, tenant, queue, 1, run_at=run_at)
    job = await job_state(engine, job_id)
    stale = job.envelope(job.attempt + 2).encode()
    async with db.transaction(engine) as conn:
        await conn.execute(
            text("INSERT INTO outbox (topic, key, value, job_id) VALUES (:t, :k, :v, :id)"),
            {"t": f"jobs.{queue}", "k": str(job_id), "v": stale, "id": job_id},
        )
    await drain(publisher_for(engine, producer, kafka_settings))
    assert (await job_state(engine, job_id)).state is JobState.SCHEDULED
