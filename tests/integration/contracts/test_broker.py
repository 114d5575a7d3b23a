"""The broker edge's contract: what Jobline relies on from a Kafka-protocol broker, as one
set of cases run against every broker at hand (eventsourcing's recorder test case, River's
driver suite).

Backends: the run's broker (the embedded Tansu, or the Kafka that JOBLINE_TEST_KAFKA_BOOTSTRAP
or JOBLINE_TEST_DOCKER names), and a private embedded Tansu when the run's broker is another
one, so a real-Kafka run checks both against the same cases.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from jobline.broker.kafka import check_broker, ensure_topics, make_consumer, make_producer
from jobline.core import topics
from jobline.core.errors import DependencyUnavailable
from jobline.dev.embedded import EmbeddedBroker, free_port
from jobline.settings import KafkaSettings


def _external_run() -> bool:
    return bool(os.environ.get("JOBLINE_TEST_KAFKA_BOOTSTRAP")) or (
        os.environ.get("JOBLINE_TEST_DOCKER") == "1"
    )


# The embedded broker on its own only when the run's broker is another one.
BACKENDS = ["run", "embedded"] if _external_run() else ["run"]


@pytest.fixture(scope="module", params=BACKENDS)
def broker(request, kafka_settings, tmp_path_factory) -> Iterator[KafkaSettings]:
    if request.param == "run":
        yield kafka_settings
        return
    tansu = EmbeddedBroker(free_port(), tmp_path_factory.mktemp("contract") / "tansu.log")
    tansu.start()
    try:
        yield KafkaSettings(kafka_bootstrap=tansu.bootstrap, topic_prefix="contract")
    finally:
        tansu.stop()


@pytest.fixture
def group_overrides(broker, kafka_group_overrides) -> Any:
    # Tansu ignores LeaveGroup: a short session lets a replacement consumer in quickly.
    if broker.kafka_bootstrap.startswith("127.0.0.1") and not _external_run():
        return kafka_group_overrides
    return {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def _fresh_topic(settings: KafkaSettings) -> str:
    return topics.work_topic(settings.topic_prefix, f"q{uuid4().hex[:8]}")


async def _produce(settings: KafkaSettings, topic: str, count: int, **send: Any) -> list[Any]:
    producer = make_producer(settings)
    await producer.start()
    try:
        sends = [
            await producer.send(topic, key=f"job-{i % 20}".encode(), value=str(i).encode(), **send)
            for i in range(count)
        ]
        return list(await asyncio.gather(*sends))
    finally:
        await producer.stop()


async def test_ensure_topics_creates_only_missing_topics(broker):
    first, second = _fresh_topic(broker), _fresh_topic(broker)

    assert await ensure_topics(broker, [first, first], partitions=3) == [first]
    assert await ensure_topics(broker, [first], partitions=3) == []
    assert await ensure_topics(broker, [first, second], partitions=2) == [second]

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([first, second])
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {first: 3, second: 2}


async def test_round_trip_with_a_consumer_group_and_manual_commit(broker, group_overrides):
    topic = _fresh_topic(broker)
    group = f"{broker.topic_prefix}.group.{uuid4().hex[:8]}"
    await ensure_topics(broker, [topic], partitions=3)
    acks = await _produce(broker, topic, 100)
    assert {ack.partition for ack in acks} == {0, 1, 2}

    received: list[Any] = []
    consumer = make_consumer(broker, topic, group_id=group, **group_overrides)
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

    late = make_consumer(broker, topic, group_id=group, **group_overrides)
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


async def test_headers_survive_the_round_trip(broker):
    """The relay sends lifecycle events in the CloudEvents structured binding: the
    content-type header must reach subscribers."""
    topic = _fresh_topic(broker)
    await ensure_topics(broker, [topic], partitions=1)
    header = [("content-type", b"application/cloudevents+json")]
    await _produce(broker, topic, 3, headers=header)
    consumer = make_consumer(broker, topic, group_id=None)
    await consumer.start()
    try:
        received: list[Any] = []
        async with asyncio.timeout(15):
            while len(received) < 3:
                batches = await consumer.getmany(timeout_ms=200)
                received += [m for ms in batches.values() for m in ms]
    finally:
        await consumer.stop()
    assert all(list(m.headers) == header for m in received)


async def test_a_paused_partition_delivers_nothing_until_resumed(broker):
    """The worker bounds its in-flight work by pausing partitions, not by not polling."""
    topic = _fresh_topic(broker)
    await ensure_topics(broker, [topic], partitions=1)
    consumer = make_consumer(broker, group_id=None, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        consumer.pause(tp)
        await _produce(broker, topic, 5)
        for _ in range(5):
            assert await consumer.getmany(timeout_ms=100) == {}
        consumer.resume(tp)
        received: list[Any] = []
        async with asyncio.timeout(15):
            while len(received) < 5:
                batches = await consumer.getmany(timeout_ms=200)
                received += [m for ms in batches.values() for m in ms]
    finally:
        await consumer.stop()
    assert [int(m.value) for m in received] == list(range(5))


async def test_check_broker_succeeds(broker):
    await check_broker(broker)


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
