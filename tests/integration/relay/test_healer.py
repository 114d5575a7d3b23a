"""Healing: queued jobs whose work message left the outbox long ago get it again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from jobline.core.envelope import WorkEnvelope
from jobline.core.states import Claim
from jobline.pg import jobstore
from jobline_relay import healer
from tests.integration.relay.test_publisher import drain, publisher_for
from tests.support import (
    TopicReader,
    fresh_queue,
    job_of,
    new_tenant,
    outbox_rows_of,
    submit_many,
    work_topic,
)


async def test_a_queued_jobs_message_is_written_again_then_spaced_out(
    db,
    kafka_settings,
    producer,
):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 5)
    publisher = publisher_for(db, producer, kafka_settings)
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        await drain(publisher)
        await reader.wait_for(ids, timeout=10)
        # Not yet waited long enough.
        assert await healer.heal_batch(db, after=30, limit=100, queues=[queue]) == 0

        await asyncio.sleep(0.6)
        assert await healer.heal_batch(db, after=0.5, limit=100, queues=[queue]) == 5
        assert await outbox_rows_of(db, ids) == 5
        # Still in the outbox: nothing to heal, whatever the wait.
        assert await healer.heal_batch(db, after=0.0, limit=100, queues=[queue]) == 0
        await drain(publisher)
        await reader.until(lambda _: all(reader.counts[str(i)] == 2 for i in ids))
        # Healed once: the next waits twice as long (2 x 0.5 s).
        assert await healer.heal_batch(db, after=0.5, limit=100, queues=[queue]) == 0
        await asyncio.sleep(1.1)
        assert await healer.heal_batch(db, after=0.5, limit=100, queues=[queue]) == 5

    # The message written again is the same attempt's: the claim takes one and skips the other.
    envelopes = [WorkEnvelope.decode(value) for _, value, _ in reader.values]
    assert {(e.id, e.attempt) for e in envelopes} == {(i, 1) for i in ids}
    for job_id in ids:
        job = await job_of(db, job_id)
        assert job.state.value == "queued"
        assert job.attempt == 0
    async with db.connection() as conn:
        heals = await conn.fetch("SELECT heals FROM jobs WHERE id = ANY($1)", ids)
    assert [r["heals"] for r in heals] == [2] * 5


async def test_claimed_jobs_other_queues_and_later_jobs_are_left_alone(
    db,
    kafka_settings,
    producer,
):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 3)
    await drain(publisher_for(db, producer, kafka_settings))
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        await jobstore.apply(conn, ids[0], Claim(1, "w1", 30), now)
    await asyncio.sleep(0.2)

    assert await healer.heal_batch(db, after=0.0, limit=100, queues=[fresh_queue()]) == 0
    before = now - timedelta(minutes=1)
    assert await healer.heal_batch(db, after=0.0, limit=100, queues=[queue], before=before) == 0
    assert await healer.heal_batch(db, after=0.0, limit=100, queues=[queue]) == 2
    assert (await job_of(db, ids[0])).state.value == "running"
