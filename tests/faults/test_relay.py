"""The outbox relay under faults: SIGKILL mid-publish, two replicas, a broker outage."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import pytest

from jobline.dev.embedded import EmbeddedBroker, free_port
from jobline.settings import KafkaSettings
from tests.support import (
    TopicReader,
    fresh_queue,
    http_status,
    new_tenant,
    outbox_rows_of,
    submit_many,
    wait_for,
    work_topic,
)

BATCH = 500
FAST = {
    "JOBLINE_RELAY_POLL_INTERVAL_SECONDS": "0.5",
    "JOBLINE_RELAY_BATCH_SIZE": str(BATCH),
    # These read every work message off the topic with no worker running: tenant fairness
    # would rightly keep all but a window of one tenant's backlog parked in PostgreSQL.
    "JOBLINE_RELAY_FAIR_WINDOW": "0",
}


def published_by(url: str) -> float:
    """The relay's own count of published messages (all topic kinds), from /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        body = response.read().decode()
    pattern = r"^jobline_relay_published_messages_total\{[^}]*\} ([0-9.e+]+)$"
    return sum(float(v) for v in re.findall(pattern, body, re.MULTILINE))


async def test_sigkill_mid_publish_loses_nothing(db, kafka_settings, stack):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 20_000)
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        first = stack.start("relay", env=FAST)
        while reader.seen(ids) < 0.3 * len(ids):
            await reader.poll(timeout_ms=20)
        first.kill()
        seen_at_kill = reader.seen(ids)
        left = await outbox_rows_of(db, ids)
        # The kill must land mid-publish for this test to mean anything.
        assert left > 0, "the relay finished before it was killed"
        stack.start("relay", env=FAST)
        await reader.wait_for(ids, timeout=60)
        await asyncio.sleep(0.5)  # a late duplicate still in flight counts too
        await reader.poll()
    duplicates = reader.duplicates(ids)
    print(
        f"\nSIGKILL after {seen_at_kill} of {len(ids)} jobs were on the topic "
        f"({left} of their outbox rows left): after restart all {reader.seen(ids)} present, "
        f"{duplicates} duplicate work messages"
    )
    assert reader.seen(ids) == len(ids)
    # Only the batch in flight at the kill can be published twice.
    assert duplicates <= BATCH


async def test_two_relays_share_the_backlog_without_duplicates(db, kafka_settings, stack):
    tenant, queue = await new_tenant(db), fresh_queue()
    relays = [stack.start("relay", env=FAST, wait=False) for _ in range(2)]
    for relay in relays:
        relay.wait_ready()
    async with TopicReader(kafka_settings, work_topic(kafka_settings, queue)) as reader:
        ids = await submit_many(db, tenant, queue, 10_000)
        await reader.wait_for(ids, timeout=60)
        await asyncio.sleep(0.5)
        await reader.poll()
    shares = [published_by(relay.url) for relay in relays]
    duplicates = reader.duplicates(ids)
    print(
        f"\ntwo relays: all {reader.seen(ids)} jobs present, {duplicates} duplicates; "
        f"messages published per relay {shares}"
    )
    assert reader.seen(ids) == len(ids)
    assert duplicates == 0  # SKIP LOCKED: no row is ever claimed by both
    assert all(share > 0 for share in shares), "one relay did all the work"


@pytest.fixture
def outage_broker(tmp_path: Path):
    """A broker of this test's own, down until the test starts it."""
    broker = EmbeddedBroker(free_port(), tmp_path / "outage-broker.log")
    yield broker
    broker.stop()


async def test_a_broker_outage_keeps_the_backlog_and_publishes_it_later(
    db, kafka_settings, stack, outage_broker
):
    settings = KafkaSettings(
        kafka_bootstrap=outage_broker.bootstrap, topic_prefix=kafka_settings.topic_prefix
    )
    tenant, queue = await new_tenant(db), fresh_queue()
    relay = stack.start(
        "relay",
        env={
            **FAST,
            "JOBLINE_KAFKA_BOOTSTRAP": outage_broker.bootstrap,
            "JOBLINE_KAFKA_REQUEST_TIMEOUT_MS": "2000",
            "JOBLINE_RELAY_PUBLISH_TIMEOUT_SECONDS": "2",
            "JOBLINE_RELAY_RETRY_MAX_SECONDS": "1",
        },
        wait=False,
    )
    readyz = relay.url + "/readyz"

    async def status() -> int | None:
        return await asyncio.to_thread(http_status, readyz)

    # 1. Started while the broker is down: not ready, the backlog waits in PostgreSQL.
    await wait_for(lambda: _is(status(), 503), 30)
    before = await submit_many(db, tenant, queue, 300)
    await asyncio.sleep(1.5)  # several publish attempts fail meanwhile
    assert await outbox_rows_of(db, before) == 300  # one row per job (event + work message)
    assert await status() == 503

    # 2. The broker comes up: everything is published, ready again.
    outage_broker.start()
    async with TopicReader(settings, work_topic(settings, queue)) as reader:
        await reader.wait_for(before, timeout=30)
    await wait_for(lambda: _is(status(), 200), 30)

    # 3. The broker dies mid-way (in-memory: it comes back empty) with more work queued.
    outage_broker.stop()
    during = await submit_many(db, tenant, queue, 300)
    await wait_for(lambda: _is(status(), 503), 30)
    assert await outbox_rows_of(db, during) == 300
    outage_broker.start()
    async with TopicReader(settings, work_topic(settings, queue)) as reader:
        await reader.wait_for(during, timeout=30)
    await wait_for(lambda: _is(status(), 200), 30)
    await wait_for(lambda: _zero(outbox_rows_of(db, before + during)), 10)
    assert relay.terminate() == 0


async def _is(awaitable, expected) -> bool:
    return bool(await awaitable == expected)


async def _zero(awaitable) -> bool:
    return bool(await awaitable == 0)
