"""Publish one batch of due outbox rows: claim, flip delayed jobs, send, await acks, delete.

One transaction per batch, and it stays open across the publish:

* The claim's row locks (``FOR UPDATE SKIP LOCKED``) keep other relays off these rows until
  the commit, so replicas never publish the same row (and a late commit is simply picked up
  later: there is no cursor over ids).
* A delayed job (``scheduled`` | ``retrying``) becomes ``queued`` in this same transaction,
  and its row lock is held until the commit. A worker that receives the message before we
  commit blocks on that lock in its claim (plain ``FOR UPDATE``) and then sees ``queued``;
  it never sees the job still ``scheduled`` and drops a valid message.
* Rows are deleted only after the broker acknowledged every message. A failed publish rolls
  back (the rows stay, nothing is lost); a crash after the broker accepted some messages but
  before the commit re-publishes them: duplicates, which the worker's guarded claim absorbs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobline.broker import kafka
from jobline.core import topics
from jobline.core.envelope import InvalidEnvelope, WorkEnvelope
from jobline.core.states import Due, transition
from jobline.pg import jobstore, outbox
from jobline.pg.queries import q
from jobline.settings import KafkaSettings
from jobline_relay import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did: rows published and deleted, delayed jobs that became queued."""

    published: int
    made_due: int


class Publisher:
    """Publishes the outbox batch by batch; any number of these may run (one per replica)."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        kafka_settings: KafkaSettings,
        *,
        batch_size: int,
        publish_timeout: float,
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.kafka_settings = kafka_settings
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        self._known_topics: set[str] = set()

    async def publish_batch(self) -> BatchResult:
        """Claim up to ``batch_size`` due rows and publish them, all or nothing.

        Raises whatever the broker or the database raised; the transaction is then rolled
        back and every claimed row stays in the outbox for the next attempt.
        """
        async with self.engine.begin() as conn:
            rows = await outbox.claim(conn, self.batch_size)
            if not rows:
                return BatchResult(0, 0)
            made_due = await self._make_due(conn, rows)
            await self._send(rows)
            await outbox.delete(conn, [row.id for row in rows])
        # Counted once committed: a rolled-back batch published nothing we stand by.
        metrics.PUBLISH_BATCH_SIZE.observe(len(rows))
        kinds: dict[str, int] = {}
        for row in rows:
            kind = metrics.topic_kind(row.topic)
            kinds[kind] = kinds.get(kind, 0) + 1
        for kind, count in kinds.items():
            metrics.PUBLISHED.labels(kind=kind).inc(count)
        if made_due:
            metrics.JOBS_MADE_DUE.inc(made_due)
        return BatchResult(len(rows), made_due)

    async def _make_due(self, conn: AsyncConnection, rows: Sequence[outbox.OutboxRow]) -> int:
        """scheduled | retrying -> queued for the jobs whose work message is in this batch.

        The transition's "queued" CloudEvent goes into the outbox in this transaction and is
        published by a later batch.
        """
        work = {row.job_id: row for row in rows if row.job_id is not None and _is_work(row.topic)}
        if not work:
            return 0
        result = await conn.execute(q("delayed_jobs_of_batch"), {"ids": list(work)})
        now = datetime.now(UTC)
        made_due = 0
        for record in result.all():
            job = jobstore.job_from_row(record)
            if not _starts_next_attempt(work[job.id].value, job.attempt):
                # A stale work message (an older attempt): publishing it is harmless (the
                # claim refuses it), but it must not move the job.
                continue
            await jobstore.save(conn, job, Due(), transition(job, Due(), now), now)
            made_due += 1
        return made_due

    async def _send(self, rows: Sequence[outbox.OutboxRow]) -> None:
        """Send every row, then wait for every acknowledgement (or raise)."""
        prefix = self.kafka_settings.topic_prefix
        resolved = [topics.resolve(prefix, row.topic) for row in rows]
        await self._ensure_topics(resolved)
        started = time.perf_counter()
        acks: list[asyncio.Future[Any]] = []
        async with asyncio.timeout(self.publish_timeout):
            for topic, row in zip(resolved, rows, strict=True):
                key = row.key.encode() if row.key is not None else None
                ack = await self.producer.send(topic, row.value, key=key)
                # On a timeout the pending acks are abandoned, not cancelled (aiokafka owns
                # them); this keeps their late errors from being logged as never retrieved.
                ack.add_done_callback(_retrieve)
                acks.append(ack)
            # asyncio.wait, unlike gather, does not cancel the acks if the timeout fires.
            await asyncio.wait(acks)
        for ack in acks:
            if (error := ack.exception()) is not None:
                raise error
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)

    def forget_topics(self) -> None:
        """Check the topics again before the next batch (after a failure)."""
        self._known_topics.clear()

    async def _ensure_topics(self, names: Sequence[str]) -> None:
        """Create topics on first use (a new queue), so we never rely on broker auto-create."""
        missing = set(names) - self._known_topics
        if missing:
            created = await kafka.ensure_topics(self.kafka_settings, sorted(missing))
            if created:
                log.info("created topics", extra={"topics": created})
            # aiokafka refreshes metadata only for the topics its client tracks, and a topic
            # it learnt from the start-up metadata is not tracked: once a new topic is added,
            # that one drops out of the metadata and sends to it fail (NotLeaderForPartition)
            # until the timeout. Track every topic we publish to.
            for topic in sorted(missing):
                await self.producer.client.add_topic(topic)
            # After a failure (a broker restart can re-create a topic with another partition
            # count, e.g. by a client's auto-create) the cached partitions may be stale; a
            # message addressed to a partition the topic no longer has must not be sent, so
            # read the metadata afresh before the first send.
            await self.producer.client.force_metadata_update()
            self._known_topics |= missing


def _is_work(logical: str) -> bool:
    return logical.startswith(topics.WORK_PREFIX) and logical != topics.DLQ


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _starts_next_attempt(value: bytes, attempt: int) -> bool:
    try:
        return WorkEnvelope.decode(value).attempt == attempt + 1
    except InvalidEnvelope:
        return False
