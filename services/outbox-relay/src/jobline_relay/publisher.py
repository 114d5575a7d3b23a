"""Publish one batch of due outbox rows: take, flip delayed jobs, send, await acks, commit.

One transaction per batch, and it stays open across the publish:

* ``take_outbox`` deletes the rows under ``FOR UPDATE SKIP LOCKED`` locks, so replicas never
  publish the same row, and a job's row waits while an older due row of the same job is
  still held by another relay: each job's messages leave in the order they were written.
* A delayed work message (``due_attempt``) makes its job ``queued`` in this same transaction,
  through the state machine's ``Due``, which refuses a stale one (an older attempt's
  message: it is still published, the worker's claim refuses it too). The job's row lock is
  held until the commit: a worker that receives the message first blocks in its claim and
  then sees ``queued``, never a job still ``scheduled``.
* The commit comes only after the broker acknowledged every message. A failed publish rolls
  back (the rows are back, nothing is lost); a crash after the broker accepted some messages
  but before the commit re-publishes them: duplicates, which the guarded claim absorbs.

Lifecycle events are sent in the CloudEvents Kafka binding's structured mode: the value is
the JSON event and the ``content-type`` header says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from jobline.broker import kafka
from jobline.core import cloudevent, registry, topics
from jobline.core.errors import IllegalTransition
from jobline.core.states import Due, transition
from jobline.pg import jobstore, outbox
from jobline.pg.db import Conn, Database
from jobline.settings import KafkaSettings
from jobline_relay import metrics
from jobline_relay.declared import DeclaredQueues

log = logging.getLogger(__name__)

EVENT_HEADERS: Final = [("content-type", cloudevent.CONTENT_TYPE.encode())]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did: rows and messages published, delayed jobs that became queued."""

    rows: int
    messages: int
    made_due: int


class Publisher:
    """Publishes the outbox batch by batch; any number of these may run (one per replica)."""

    def __init__(
        self,
        db: Database,
        producer: AIOKafkaProducer,
        kafka_settings: KafkaSettings,
        *,
        batch_size: int,
        publish_timeout: float,
        hold_seconds: float = 30.0,
        declared_ttl: float = 30.0,
    ) -> None:
        self.db = db
        self.declared = DeclaredQueues(ttl=declared_ttl)
        self.hold_seconds = hold_seconds
        self.producer = producer
        self.kafka_settings = kafka_settings
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        self._known_topics: set[str] = set()

    async def publish_batch(self) -> BatchResult:
        """Take up to ``batch_size`` due rows and publish them, all or nothing.

        Raises whatever the broker or the database raised; the transaction is then rolled
        back and every taken row is back in the outbox for the next attempt.
        """
        async with self.db.transaction() as conn:
            rows = await outbox.take(conn, self.batch_size)
            if not rows:
                return BatchResult(0, 0, 0)
            rows, partitions = await self._declared_only(conn, rows)
            made_due = await self._make_due(conn, rows)
            sent = await self._send(rows, partitions)
        # Counted once committed: a rolled-back batch published nothing we stand by.
        metrics.PUBLISH_BATCH_SIZE.observe(len(rows))
        for kind, count in sent.items():
            metrics.PUBLISHED.labels(kind=kind).inc(count)
        if made_due:
            metrics.JOBS_MADE_DUE.inc(made_due)
        return BatchResult(len(rows), sum(sent.values()), made_due)

    async def _declared_only(
        self, conn: Conn, rows: Sequence[outbox.OutboxRow]
    ) -> tuple[list[outbox.OutboxRow], dict[str, int | None]]:
        """The rows whose work messages go to declared queues, and those queues' topics'
        partitions; the other rows go back into the outbox for later (see
        :mod:`jobline_relay.declared`). Publishing only here means no topic is ever created
        for a queue nobody declared."""
        named = {
            logical[len(topics.WORK_PREFIX) :]
            for row in rows
            for logical, _ in row.messages
            if topics.is_work(logical)
        }
        declared = await self.declared.lookup(conn, named) if named else {}
        if len(declared) == len(named):
            return list(rows), declared
        publish: list[outbox.OutboxRow] = []
        held: list[outbox.OutboxRow] = []
        for row in rows:
            undeclared = registry.undeclared_queues((t for t, _ in row.messages), declared)
            (held if undeclared else publish).append(row)
        until = datetime.now(UTC) + timedelta(seconds=self.hold_seconds)
        await outbox.hold(conn, held, until)
        metrics.HELD_UNDECLARED.inc(len(held))
        log.warning(
            "rows for undeclared queues held back (declare the queue to publish them)",
            extra={"rows": len(held), "queues": sorted(named - declared.keys())[:20]},
        )
        return publish, declared

    async def _make_due(self, conn: Conn, rows: Sequence[outbox.OutboxRow]) -> int:
        """scheduled | retrying -> queued for the jobs whose delayed work message goes now.

        The transition's "queued" event goes into the outbox in this transaction and is
        published by a later batch (after this one: it is younger than every row here).
        """
        due = {row.job_id: row.due_attempt for row in rows if row.due_attempt and row.job_id}
        if not due:
            return 0
        now = datetime.now(UTC)
        writes = []
        for job in (await jobstore.lock_many(conn, list(due))).values():
            event = Due(due[job.id])
            try:
                writes.append(jobstore.Write(job, event, transition(job, event, now)))
            except IllegalTransition:
                # Stale (an older attempt's message) or the job moved on (cancelled): the
                # message is still published, harmlessly; the job stays as it is.
                continue
        await jobstore.save_many(conn, writes, now)
        return len(writes)

    async def _send(
        self, rows: Sequence[outbox.OutboxRow], partitions: dict[str, int | None]
    ) -> dict[str, int]:
        """Send every message, then wait for every acknowledgement (or raise).

        ``partitions``: of the declared queues the rows' work messages go to.
        """
        prefix = self.kafka_settings.topic_prefix
        messages = [
            (topics.resolve(prefix, logical), logical, value, row.key)
            for row in rows
            for logical, value in row.messages
        ]
        sizes = {topics.work_topic(prefix, q): count for q, count in partitions.items()}
        await self._ensure_topics({m[0]: sizes.get(m[0]) for m in messages})
        started = time.perf_counter()
        acks: list[asyncio.Future[Any]] = []
        kinds: dict[str, int] = {}
        async with asyncio.timeout(self.publish_timeout):
            for topic, logical, value, key in messages:
                headers = EVENT_HEADERS if logical == topics.EVENTS else None
                ack = await self.producer.send(
                    topic, value, key=key.encode() if key else None, headers=headers
                )
                # On a timeout the pending acks are abandoned, not cancelled (aiokafka owns
                # them); this keeps their late errors from being logged as never retrieved.
                ack.add_done_callback(_retrieve)
                acks.append(ack)
                kind = metrics.topic_kind(logical)
                kinds[kind] = kinds.get(kind, 0) + 1
            # asyncio.wait, unlike gather, does not cancel the acks if the timeout fires.
            await asyncio.wait(acks)
        for ack in acks:
            if (error := ack.exception()) is not None:
                raise error
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
        return kinds

    def forget_topics(self) -> None:
        """Check the topics again before the next batch (after a failure)."""
        self._known_topics.clear()

    async def _ensure_topics(self, names: dict[str, int | None]) -> None:
        """Create topics on first use (a newly declared queue), each with its declared
        partitions, so we never rely on broker auto-create."""
        missing = names.keys() - self._known_topics
        if missing:
            created = await kafka.ensure_topics_sized(
                self.kafka_settings, {name: names[name] for name in sorted(missing)}
            )
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


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
