import asyncio
import socket
import time
from collections import defaultdict
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from jobline.broker.kafka import check_broker, ensure_topics, make_consumer, make_producer
from jobline.core import topics
from jobline.core.errors import DependencyUnavailable
from jobline.dev.embedded import free_port
from jobline.settings import KafkaSettings


def _fresh_topic(settings: KafkaSettings) -> str:
    return topics.work_topic(settings.topic_prefix, f"q{uuid4().hex[:8]}")


async def test_ensure_topics_creates_only_missing_topics(kafka_settings):
    first, second = _fresh_topic(kafka_settings), _fresh_topic(kafka_settings)

    assert await ensure_topics(kafka_settings, [first, first], partitions=3) == [first]
    assert await ensure_topics(kafka_settings, [first], partitions=3) == []
    assert await ensure_topics(kafka_settings, [first, second], partitions=2) == [second]

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([first, second])
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {first: 3, second: 2}


async def test_round_trip_with_a_consumer_group_and_manual_commit(
    kafka_settings, kafka_group_overrides
):
    topic = _fresh_topic(kafka_settings)
    group = f"{kafka_settings.topic_prefix}.group.{uuid4().hex[:8]}"
    await ensure_topics(kafka_settings, [topic], partitions=3)

    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        sends = [
            await producer.send(topic, key=f"job-{i % 20}".encode(), value=str(i).encode())
            for i in range(100)
        ]
        acks = await asyncio.gather(*sends)
    finally:
        await producer.stop()
    assert {ack.partition for ack in acks} == {0, 1, 2}

    received: list[Any] = []
    consumer = make_consumer(kafka_settings, topic, group_id=group, **kafka_group_overrides)
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while len(received) < 100:
                batches = await consumer.getmany(timeout_ms=500)
                received += [msg for msgs in batches.values() for msg in msgs]
        await consumer.commit()
    finally:
        await consumer.stop()

    assert sorted(int(msg.value) for msg in received) == list(range(100))
    partitions_of_key = defaultdict(set)
    values_of_key = defaultdict(list)
    for msg in received:
        partitions_of_key[msg.key].add(msg.partition)
        values_of_key[msg.key].append(int(msg.value))
    assert all(len(parts) == 1 for parts in partitions_of_key.values())  # key -> one partition
    assert all(vals == sorted(vals) for vals in values_of_key.values())  # in order per key

    late = make_consumer(kafka_settings, topic, group_id=group, **kafka_group_overrides)
    await late.start()
    try:
        leftovers = []
        async with asyncio.timeout(30):
            while not late.assignment():
                batches = await late.getmany(timeout_ms=200)
                leftovers += [msg for msgs in batches.values() for msg in msgs]
        for _ in range(3):
            batches = await late.getmany(timeout_ms=300)
            leftovers += [msg for msgs in batches.values() for msg in msgs]
        assert leftovers == []
        # Committed = one past the last offset read. (Tansu's end_offsets() is no use here:
        # it reports one offset per record batch.)
        consumed_to: dict[Any, int] = {}
        for msg in received:
            tp = TopicPartition(topic, msg.partition)
            consumed_to[tp] = max(consumed_to.get(tp, 0), msg.offset + 1)
        assert {tp: await late.committed(tp) for tp in consumed_to} == consumed_to
    finally:
        await late.stop()


async def test_check_broker_succeeds(kafka_settings):
    await check_broker(kafka_settings)


async def test_check_broker_on_a_closed_port_raises_quickly():
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable, match=f"broker at {bootstrap} unreachable"):
        await check_broker(KafkaSettings(kafka_bootstrap=bootstrap), timeout=1.0)
    assert time.monotonic() - started < 1.5


async def test_check_broker_on_a_silent_server_times_out():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        bootstrap = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable, match="unreachable"):
            await check_broker(KafkaSettings(kafka_bootstrap=bootstrap), timeout=0.5)
        assert time.monotonic() - started < 1.5
