"""One batch of the relay against real PostgreSQL and the broker (in-process)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat

from jobline.core import cloudevent, eventstream
from jobline.core.envelope import WorkEnvelope
from jobline.core.job import JobState
from jobline.core.states import Cancel, Claim, Fail, Succeed
from jobline.pg import jobstore, outbox
from jobline.pg.queries import SQL
from jobline_relay.publisher import Publisher
from tests.support import (
    TopicReader,
    fresh_queue,
    job_of,
    new_tenant,
    outbox_rows_of,
    submit_many,
    work_topic,
)


def publisher_for(db, producer, kafka_settings, batch_size: int = 10_000) -> Publisher:
    return Publisher(db, producer, kafka_settings, batch_size=batch_size, publish_timeout=10)


async def drain(publisher: Publisher) -> int:
    total = 0
    while (result := await publisher.publish_batch()).rows:
        total += result.messages
    return total


async def test_a_batch_publishes_work_and_events_then_deletes_the_rows(
    db, kafka_settings, producer
):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 50)
    publisher = publisher_for(db, producer, kafka_settings)

    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        assert await drain(publisher) >= 100  # a work message and a "queued" event per job
        await reader.wait_for(ids, timeout=10)

    assert await outbox_rows_of(db, ids) == 0
    envelopes = [WorkEnvelope.decode(value) for _, value, _ in reader.values]
    assert {e.id for e in envelopes} == set(ids)
    assert {e.attempt for e in envelopes} == {1}
    assert reader.duplicates(ids) == 0


async def test_events_go_out_in_the_cloudevents_structured_binding(db, kafka_settings, producer):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 3)
    events_topic = f"{kafka_settings.topic_prefix}.events"
    async with TopicReader(kafka_settings, events_topic) as reader:
        await drain(publisher_for(db, producer, kafka_settings))
        await reader.until(lambda rs: {r.key.decode() for r in rs} >= {str(i) for i in ids})
    mine = [r for r in reader.records if r.key.decode() in {str(i) for i in ids}]
    for record in mine:
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        assert cloudevent.decode(record.value).get_type() == "jobline.job.queued"


async def test_every_event_type_reads_back_through_the_cloudevents_kafka_binding(
    db, kafka_settings, producer
):
    """The CloudEvents SDK's Kafka binding, as a subscriber uses it, reads each lifecycle
    event type as published: structured mode, chosen by the content-type header."""
    tenant, queue = await new_tenant(db), fresh_queue()
    now = datetime.now(UTC)
    [later] = await submit_many(db, tenant, queue, 1, run_at=now + timedelta(hours=1))
    ok, dies, cancelled, retries = await submit_many(db, tenant, queue, 4)
    async with db.transaction() as conn:
        for job_id in (ok, dies, retries):
            await jobstore.apply(conn, job_id, Claim(1, "w", 30), now)
        await jobstore.apply(conn, ok, Succeed(1, "w", {}), now)
        await jobstore.apply(conn, dies, Fail(1, "w", "E", "no", retryable=False), now)
        await jobstore.apply(conn, retries, Fail(1, "w", "E", "again"), now)
        await jobstore.apply(conn, cancelled, Cancel(), now)
    ids = {str(i) for i in (later, ok, dies, cancelled, retries)}
    every_type = {f"jobline.job.{name}" for name in eventstream.EVENT_NAMES}
    async with TopicReader(kafka_settings, f"{kafka_settings.topic_prefix}.events") as reader:
        await drain(publisher_for(db, producer, kafka_settings))
        await reader.until(
            lambda rs: (
                {json.loads(r.value)["type"] for r in rs if r.key.decode() in ids} >= every_type
            )
        )
    mine = [r for r in reader.records if r.key.decode() in ids]
    seen = set()
    for record in mine:
        message = kafka_binding.KafkaMessage(
            headers={name: bytes(value) for name, value in record.headers},
            key=record.key,
            value=record.value,
        )
        event = kafka_binding.from_kafka_event(message)  # detects the mode from the headers
        strict = kafka_binding.from_structured(message, JSONFormat())
        assert event.get_attributes() == strict.get_attributes()
        assert event.get_data() == json.loads(record.value)["data"]
        assert event.get_subject() == record.key.decode()
        seen.add(event.get_type())
    assert seen == every_type


async def test_a_failed_publish_rolls_back_and_keeps_every_row(db, kafka_settings, producer):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 20)

    class BrokenProducer:
        client = producer.client

        async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionError("broker gone"))
            return future

    broken = publisher_for(db, BrokenProducer(), kafka_settings)
    with pytest.raises(ConnectionError, match="broker gone"):
        await broken.publish_batch()
    assert await outbox_rows_of(db, ids) == 20  # one row per job: event + work message

    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        await drain(publisher_for(db, producer, kafka_settings))
        await reader.wait_for(ids, timeout=10)
    assert await outbox_rows_of(db, ids) == 0


async def test_replicas_never_take_the_same_rows(db, kafka_settings, producer):
    """While one relay's batch is open, another relay skips its rows (SKIP LOCKED)."""
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 30)
    release = asyncio.Event()
    holding = asyncio.Event()

    class SlowProducer:
        client = producer.client

        async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            holding.set()
            await release.wait()
            ack: asyncio.Future[Any] = await producer.send(*args, **kwargs)
            return ack

    slow = publisher_for(db, SlowProducer(), kafka_settings, batch_size=10)
    fast = publisher_for(db, producer, kafka_settings)
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        slow_batch = asyncio.create_task(slow.publish_batch())
        await holding.wait()
        other = await drain(fast)  # everything except the 10 rows the slow batch holds
        release.set()
        assert (await slow_batch).rows == 10
        await reader.wait_for(ids, timeout=10)
    assert other >= 40  # 30 rows of two messages each, minus the 10 held
    assert reader.duplicates(ids) == 0


async def test_each_jobs_events_leave_in_order_across_relays(db, kafka_settings, producer):
    """Three relays drain at once while every job has three rows waiting (submitted, started,
    succeeded): on the events topic each job's sequence numbers arrive in order."""
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 60)
    now = datetime.now(UTC)
    for job_id in ids:
        async with db.transaction() as conn:
            await jobstore.apply(conn, job_id, Claim(1, "w", 30), now)
            await jobstore.apply(conn, job_id, Succeed(1, "w", {}), now)
    events_topic = f"{kafka_settings.topic_prefix}.events"
    async with TopicReader(kafka_settings, events_topic) as reader:
        relays = [publisher_for(db, producer, kafka_settings, batch_size=7) for _ in range(3)]
        await asyncio.gather(*(drain(r) for r in relays))
        wanted = {str(i) for i in ids}
        await reader.until(
            lambda rs: sum(1 for r in rs if r.key.decode() in wanted) >= 3 * len(ids)
        )
    sequences: dict[str, list[int]] = {}
    for record in reader.records:
        key = record.key.decode()
        if key in wanted:
            data = cloudevent.data_of(cloudevent.decode(record.value))
            sequences.setdefault(key, []).append(data["sequence"])
    assert all(seq == [1, 2, 3] for seq in sequences.values()), sequences


async def test_a_delayed_job_waits_then_becomes_queued_with_its_event(db, kafka_settings, producer):
    tenant, queue = await new_tenant(db), fresh_queue()
    run_at = datetime.now(UTC) + timedelta(seconds=1.5)
    [job_id] = await submit_many(db, tenant, queue, 1, run_at=run_at)
    assert (await job_of(db, job_id)).state is JobState.SCHEDULED
    publisher = publisher_for(db, producer, kafka_settings)

    await drain(publisher)  # only the "scheduled" event is due
    assert (await job_of(db, job_id)).state is JobState.SCHEDULED
    assert await outbox_rows_of(db, [job_id]) == 1

    await asyncio.sleep((run_at - datetime.now(UTC)).total_seconds() + 0.01)
    result = await publisher.publish_batch()
    assert result.made_due >= 1
    assert (await job_of(db, job_id)).state is JobState.QUEUED
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT topics, payloads FROM outbox WHERE job_id = $1", job_id)
    # The "queued" CloudEvent was written by the same transaction, for a later batch.
    assert [r["topics"] for r in rows] == [["events"]]
    queued = cloudevent.decode(bytes(rows[0]["payloads"][0]))
    assert queued.get_attributes()["type"] == "jobline.job.queued"
    assert cloudevent.data_of(queued)["state"] == "queued"
    await drain(publisher)
    assert await outbox_rows_of(db, [job_id]) == 0


async def test_a_stale_work_message_does_not_move_the_job(db, kafka_settings, producer):
    """A delayed work row for an attempt other than the next one is published but flips
    nothing: the state machine refuses its Due."""
    tenant, queue = await new_tenant(db), fresh_queue()
    [job_id] = await submit_many(
        db, tenant, queue, 1, run_at=datetime.now(UTC) + timedelta(hours=1)
    )
    job = await job_of(db, job_id)
    stale = job.envelope(job.attempt + 2).encode()
    async with db.connection() as conn:
        await SQL.execute(
            conn,
            "insert_outbox",
            row_job_ids=[job_id],
            row_keys=[str(job_id)],
            row_available_ats=[datetime.now(UTC)],
            row_due_attempts=[job.attempt + 2],
            row_quiets=[False],
            msg_rows=[1],
            msg_topics=[f"jobs.{queue}"],
            msg_payloads=[stale],
        )
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        await drain(publisher_for(db, producer, kafka_settings))
        await reader.wait_for([job_id], timeout=10)  # published all the same
    assert (await job_of(db, job_id)).state is JobState.SCHEDULED


async def test_take_returns_rows_oldest_first_with_their_messages_in_order(db):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 5)
    conn = await db.acquire()
    try:
        tx = conn.transaction()
        await tx.start()
        rows = [r for r in await outbox.take(conn, 10_000) if r.job_id in set(ids)]
        await tx.rollback()  # nothing is lost
    finally:
        db.release(conn)
    assert [r.job_id for r in rows] == ids
    assert all([t for t, _ in r.messages] == ["events", f"jobs.{queue}"] for r in rows)
    assert await outbox_rows_of(db, ids) == 5


async def test_rows_of_the_previous_form_are_published_and_make_their_job_due(
    db, kafka_settings, producer
):
    """Migration 0003 keeps the one-message columns while older gateways and workers roll
    out: their rows go out like any other, and a delayed work row still makes its job due."""
    tenant, queue = await new_tenant(db), fresh_queue()
    [job_id] = await submit_many(
        db, tenant, queue, 1, run_at=datetime.now(UTC) + timedelta(hours=1)
    )
    job = await job_of(db, job_id)
    async with db.connection() as conn:
        await conn.execute("DELETE FROM outbox WHERE job_id = $1", job_id)
        await conn.execute(
            "INSERT INTO outbox (topic, key, value, job_id) VALUES ($1, $2, $3, $4)",
            f"jobs.{queue}",
            str(job_id),
            job.envelope(1).encode(),
            job_id,
        )
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        await drain(publisher_for(db, producer, kafka_settings))
        await reader.wait_for([job_id], timeout=10)
    assert (await job_of(db, job_id)).state is JobState.QUEUED


async def test_a_row_over_the_message_limit_is_set_aside_and_the_rest_flows(
    db, kafka_settings, producer
):
    tenant, queue = await new_tenant(db), fresh_queue()
    big = await submit_many(db, tenant, queue, 1, payload={"blob": "x" * 8000})
    small = await submit_many(db, tenant, queue, 3)
    publisher = Publisher(
        db, producer, kafka_settings, batch_size=100, publish_timeout=10, max_message_bytes=4096
    )
    events_topic = f"{kafka_settings.topic_prefix}.events"
    async with (
        TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader,
        TopicReader(kafka_settings, events_topic) as events,
    ):
        await drain(publisher)
        await reader.wait_for(small, timeout=10)
        await reader.poll()
        await events.until(lambda _: events.counts[str(big[0])] >= 2)
    assert reader.seen(big) == 0
    states = [
        cloudevent.decode(r.value).get_type()
        for r in events.records
        if r.key.decode() == str(big[0])
    ]
    assert states == ["jobline.job.queued", "jobline.job.dead"]
    assert await outbox_rows_of(db, big + small) == 0

    # The job whose work message can never go out is dead, and says why.
    job = await job_of(db, big[0])
    assert job.state is JobState.DEAD
    assert job.attempt == 0
    assert job.last_error is not None
    assert job.last_error.error_class == "Undeliverable"
    assert "the limit is 4096" in job.last_error.message
    async with db.connection() as conn:
        kept = await conn.fetch(
            "SELECT topics, reason FROM outbox_set_aside WHERE job_id = $1 ORDER BY id", big[0]
        )
    # The submission's work message, then the dead letter (it carries the payload); their
    # rows' lifecycle events ("queued", "dead") went out.
    assert [list(r["topics"]) for r in kept] == [[f"jobs.{queue}"], ["jobs.dlq"]]
    assert all("the limit is 4096" in r["reason"] for r in kept)
