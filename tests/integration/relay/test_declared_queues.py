"""The relay publishes only to declared queues' topics: no tenant creates a Kafka topic.

A row whose work message names an undeclared queue (here inserted behind the gateway's back,
as a gateway of the previous release could) waits in the outbox and goes out once the queue
is declared, on a topic with the declared partitions; the rest of the batch flows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from aiokafka.admin import AIOKafkaAdminClient

from jobline.core.registry import QueueDeclaration
from jobline.core.states import submit
from jobline.pg import jobstore, registry
from jobline_relay import metrics
from jobline_relay.publisher import Publisher
from tests.support import (
    TopicReader,
    fresh_queue,
    make_job,
    new_tenant,
    outbox_rows_of,
    submit_many,
    work_topic,
)


async def topic_partitions(kafka_settings, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return None
        (described,) = await admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        await admin.close()


async def test_rows_for_an_undeclared_queue_wait_and_no_topic_is_created(
    db, kafka_settings, producer
):
    tenant, declared, undeclared = await new_tenant(db), fresh_queue(), f"u{uuid4().hex[:10]}"
    flowing = await submit_many(db, tenant, declared, 5)  # declares its queue
    stuck = [make_job(tenant, queue=undeclared) for _ in range(3)]
    now = datetime.now(UTC)
    async with db.connection() as conn:
        await jobstore.insert(conn, [submit(j, now) for j in stuck])
    stuck_ids = [j.id for j in stuck]
    publisher = Publisher(
        db, producer, kafka_settings, batch_size=10_000, publish_timeout=10, hold_seconds=3600
    )
    held_before = metrics.HELD_UNDECLARED._value.get()

    async with TopicReader(kafka_settings, work_topic(kafka_settings, declared)) as reader:
        while (await publisher.publish_batch()).rows:
            pass
        await reader.wait_for(flowing, timeout=10)
    assert await outbox_rows_of(db, flowing) == 0
    assert await outbox_rows_of(db, stuck_ids) == 3  # held, not lost
    assert metrics.HELD_UNDECLARED._value.get() - held_before == 3
    assert await topic_partitions(kafka_settings, work_topic(kafka_settings, undeclared)) is None
    async with db.connection() as conn:
        waiting = await conn.fetchval(
            "SELECT min(available_at) FROM outbox WHERE job_id = ANY($1)", stuck_ids
        )
    assert (waiting - datetime.now(UTC)).total_seconds() > 3000

    # Declared (with its own partition count), the rows go out once due again.
    async with db.transaction() as conn:
        await registry.declare_queue(conn, QueueDeclaration(undeclared, 3), "operator")
        await conn.execute(
            "UPDATE outbox SET available_at = now() WHERE job_id = ANY($1)", stuck_ids
        )
    topic = work_topic(kafka_settings, undeclared)
    while (await publisher.publish_batch()).rows:
        pass
    async with TopicReader(kafka_settings, topic) as reader:
        await reader.wait_for(stuck_ids, timeout=10)
    assert await outbox_rows_of(db, stuck_ids) == 0
    assert await topic_partitions(kafka_settings, topic) == 3
