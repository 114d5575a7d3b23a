"""Shared by the relay's integration, e2e and fault tests: jobs in PG, messages on topics.

Jobs are inserted with ``jobstore.insert(conn, [states.submit(job, now), ...])``, exactly
what the gateway's submit does, so these tests do not depend on the gateway.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.broker.kafka import ensure_topics, make_consumer
from jobline.core import topics
from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.states import Job, JobState, submit
from jobline.pg import db, jobstore
from jobline.pg.keystore import ensure_tenant
from jobline.settings import KafkaSettings

INSERT_BATCH = 1000


def fresh_queue() -> str:
    return f"q{uuid4().hex[:10]}"


async def new_tenant(engine: AsyncEngine) -> str:
    name = f"t-{uuid4().hex[:10]}"
    async with db.transaction(engine) as conn:
        await ensure_tenant(conn, name)
    return name


def new_job(tenant: str, queue: str, now: datetime, **changes: Any) -> Job:
    fields: dict[str, Any] = {
        "id": uuid4(),
        "tenant_id": tenant,
        "type": "echo",
        "queue": queue,
        "state": JobState.QUEUED,
        "payload": {"n": 1},
        "created_at": now,
        "run_at": now,
        "backoff": BackoffPolicy(BackoffKind.FIXED, 0.5, 0.5),
    }
    fields.update(changes)
    return Job(**fields)


async def insert_jobs(
    engine: AsyncEngine, tenant: str, queue: str, count: int, **changes: Any
) -> list[UUID]:
    """Submit ``count`` jobs as the gateway would, in transactions of ``INSERT_BATCH``."""
    ids: list[UUID] = []
    for start in range(0, count, INSERT_BATCH):
        now = datetime.now(UTC)
        submitted = [
            submit(new_job(tenant, queue, now, **changes), now)
            for _ in range(min(INSERT_BATCH, count - start))
        ]
        async with db.transaction(engine) as conn:
            await jobstore.insert(conn, submitted)
        ids += [t.job.id for t in submitted]
    return ids


async def job_state(engine: AsyncEngine, job_id: UUID) -> Job:
    async with db.transaction(engine) as conn:
        job = await jobstore.lock(conn, job_id)
    assert job is not None
    return job


async def outbox_rows_of(engine: AsyncEngine, job_ids: list[UUID]) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM outbox WHERE job_id = ANY(:ids)"), {"ids": job_ids}
        )
    return int(count or 0)


class TopicReader:
    """Reads one topic from the beginning of every partition (no group) and counts keys."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.counts: Counter[str] = Counter()
        self.values: list[tuple[str, bytes, float]] = []  # key, value, local receive time
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        await ensure_topics(self.settings, [self.topic])
        consumer = make_consumer(self.settings, group_id=None, max_poll_records=5000)
        await consumer.start()
        partitions = None
        deadline = time.monotonic() + 10
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                await consumer._client.force_metadata_update()
        assert partitions, f"no partitions for {self.topic}"
        assignment = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> int:
        """Read what is there now; returns how many messages arrived."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        received = time.monotonic()
        n = 0
        for messages in batches.values():
            for msg in messages:
                key = msg.key.decode() if msg.key is not None else ""
                self.counts[key] += 1
                self.values.append((key, msg.value, received))
                n += 1
        return n

    def seen(self, ids: list[UUID]) -> int:
        return sum(1 for i in ids if self.counts[str(i)] > 0)

    def duplicates(self, ids: list[UUID]) -> int:
        return sum(max(self.counts[str(i)] - 1, 0) for i in ids)

    async def wait_for(self, ids: list[UUID], timeout: float) -> None:  # noqa: ASYNC109
        """Poll until every id was seen at least once, or fail naming how many are missing."""
        deadline = time.monotonic() + timeout
        while self.seen(ids) < len(ids):
            if time.monotonic() > deadline:
                missing = len(ids) - self.seen(ids)
                raise AssertionError(f"{missing} of {len(ids)} jobs missing from {self.topic}")
            await self.poll()


def work_topic(settings: KafkaSettings, queue: str) -> str:
    return topics.work_topic(settings.topic_prefix, queue)


def http_status(url: str) -> int | None:
    """The status of GET ``url``, or None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


async def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> None:  # noqa: ASYNC109
    """Poll ``predicate`` (sync or async) until it is truthy, else fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
