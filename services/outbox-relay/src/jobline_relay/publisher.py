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

A message the broker can never take (over its size limit: known before sending, or refused
by the producer or the broker, which rolls the batch back once and marks the message) is
*set aside*: moved to ``outbox_set_aside`` with its reason, in the batch's transaction, while
the rest of its row and the rows behind it flow. A refused work message makes its job dead
(``Undeliverable``), so nobody waits for a job that cannot start.

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
from uuid import UUID

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

from jobline.broker import kafka
from jobline.core import cloudevent, registry, topics
from jobline.core.envelope import InvalidEnvelope, WorkEnvelope
from jobline.core.errors import IllegalTransition
from jobline.core.states import Due, Event, Undeliverable, transition
from jobline.observe import tracing
from jobline.pg import jobstore, outbox
from jobline.pg.db import Conn, Database
from jobline.settings import KafkaSettings
from jobline_relay import metrics
from jobline_relay.declared import DeclaredQueues
from jobline_relay.fairness import Fairness
from jobline_relay.logwatch import LogWatch
from jobline_relay.oversize import Slot, oversized, without
from jobline_relay.queries import SQL
from jobline_relay.tracing import PublishSpans

log = logging.getLogger(__name__)

EVENT_HEADERS: Final = [("content-type", cloudevent.CONTENT_TYPE.encode())]
# The broker's answers that mean "never this message", as opposed to "not now".
TOO_LARGE: Final = (MessageSizeTooLargeError, RecordListTooLargeError)


# (topic, logical topic, value, key, slot): one message as it is sent.
Message = tuple[str, str, bytes, str | None, Slot]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did: rows and messages published, delayed jobs that became queued."""

    rows: int
    messages: int
    made_due: int
    set_aside: int = 0


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
        max_message_bytes: int = 1_000_000,
        hold_seconds: float = 30.0,
        declared_ttl: float = 30.0,
        fairness: Fairness | None = None,
    ) -> None:
        self.db = db
        self.fairness = fairness
        self.declared = DeclaredQueues(ttl=declared_ttl)
        self.hold_seconds = hold_seconds
        self.producer = producer
        self.kafka_settings = kafka_settings
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        self.max_message_bytes = max_message_bytes
        self._known_topics: set[str] = set()
        self._published_to: set[str] = set()  # kept across forget_topics()
        self._logs = LogWatch()  # partitions whose log went back (see logwatch)
        # Messages the broker refused as too large: set aside when taken again.
        self._refused: dict[Slot, str] = {}
        # Work topics this publisher had to create again, with when: their queue's older jobs
        # may have lost their messages (the healer looks at once). Drained by the relay.
        self.created_queues: dict[str, datetime] = {}

    async def publish_batch(self) -> BatchResult:
        """Take up to ``batch_size`` due rows and publish them, all or nothing.

        Raises whatever the broker or the database raised; the transaction is then rolled
        back and every taken row is back in the outbox for the next attempt.
        """
        async with self.db.transaction() as conn:
            taken = await outbox.take(conn, self.batch_size)
            if not taken:
                return BatchResult(0, 0, 0)
            taken, partitions = await self._declared_only(conn, taken)
            if self.fairness is not None:
                taken, parked = self.fairness.split(taken)
                await self.fairness.park(conn, parked)
            refused = oversized(taken, self.max_message_bytes)
            refused |= {
                slot: reason
                for slot, reason in self._refused.items()
                if slot[0] in {row.id for row in taken}
            }
            rows = [without(row, refused) for row in taken] if refused else taken
            if refused:
                await self._set_aside(conn, taken, refused)
            made_due = await self._make_due(conn, rows)
            sent = await self._send(rows, partitions)
        # Counted once committed: a rolled-back batch published nothing we stand by.
        for slot in refused:
            self._refused.pop(slot, None)
        if refused:
            metrics.MESSAGES_SET_ASIDE.labels(reason="too_large").inc(len(refused))
        metrics.PUBLISH_BATCH_SIZE.observe(len(taken))
        for kind, count in sent.items():
            metrics.PUBLISHED.labels(kind=kind).inc(count)
        if made_due:
            metrics.JOBS_MADE_DUE.inc(made_due)
        return BatchResult(len(taken), sum(sent.values()), made_due, len(refused))

    async def publish_parked(self, conn: Conn, rows: Sequence[outbox.OutboxRow]) -> int:
        """Publish work messages released from parking (jobline_relay.fairness) in the caller's
        transaction, which deleted them and commits after the acknowledgements."""
        named = {topics.queue_of(logical) for row in rows for logical, _ in row.messages}
        partitions = await self.declared.lookup(conn, named)
        refused = oversized(rows, self.max_message_bytes)
        if refused:
            await self._set_aside(conn, rows, refused)
            metrics.MESSAGES_SET_ASIDE.labels(reason="too_large").inc(len(refused))
            rows = [without(row, refused) for row in rows]
        sent = await self._send(rows, partitions)
        for kind, count in sent.items():
            metrics.PUBLISHED.labels(kind=kind).inc(count)
        return sum(sent.values())

    async def _set_aside(
        self, conn: Conn, rows: Sequence[outbox.OutboxRow], refused: dict[Slot, str]
    ) -> None:
        """Keep the refused messages with their reason; a job whose work message is among
        them can never start: it goes dead (``Undeliverable``)."""
        undeliverable: dict[UUID, Event] = {}
        for row in rows:
            mine = [(i, m) for i, m in enumerate(row.messages) if (row.id, i) in refused]
            if not mine:
                continue
            reason = refused[row.id, mine[0][0]]
            log.error(
                "outbox row %d: %d message(s) set aside: %s",
                row.id,
                len(mine),
                reason,
                extra={"job_id": str(row.job_id) if row.job_id else None},
            )
            await SQL.execute(
                conn,
                "set_aside_outbox_row",
                outbox_id=row.id,
                job_id=row.job_id,
                key=row.key,
                topics=[logical for _, (logical, _) in mine],
                payloads=[value for _, (_, value) in mine],
                reason=reason,
            )
            for _, (logical, value) in mine:
                if row.job_id is None or not topics.is_work(logical):
                    continue
                try:
                    attempt = WorkEnvelope.decode(value).attempt
                except InvalidEnvelope:
                    continue
                undeliverable[row.job_id] = Undeliverable(attempt, reason)
        if not undeliverable:
            return
        now = datetime.now(UTC)
        writes = []
        for job in (await jobstore.lock_many(conn, list(undeliverable))).values():
            event = undeliverable[job.id]
            try:
                writes.append(jobstore.Write(job, event, transition(job, event, now)))
            except IllegalTransition:  # stale (an older attempt's message) or finished
                continue
        await jobstore.save_many(conn, writes, now)

    async def _declared_only(
        self, conn: Conn, rows: Sequence[outbox.OutboxRow]
    ) -> tuple[list[outbox.OutboxRow], dict[str, int | None]]:
        """The rows whose work messages go to declared queues, and those queues' topics'
        partitions; the other rows go back into the outbox for later (see
        :mod:`jobline_relay.declared`). Publishing only here means no topic is ever created
        for a queue nobody declared."""
        named = {
            topics.queue_of(logical)
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
        messages: list[Message] = [
            (topics.resolve(prefix, logical), logical, value, row.key, (row.id, index))
            for row in rows
            for index, (logical, value) in enumerate(row.messages)
        ]
        if not messages:  # every message of the batch was parked (a healed work message)
            return {}
        # Every lane of a queue has the queue's declared partitions.
        sizes = {t: n for q, n in partitions.items() for t in topics.lanes(prefix, q)}
        await self._ensure_topics(
            {m[0]: sizes.get(m[0]) for m in messages}, logical_of={m[0]: m[1] for m in messages}
        )
        started = time.perf_counter()
        spans = PublishSpans() if tracing.enabled() else None
        try:
            kinds = await self._send_all(messages, spans)
        except BaseException as exc:
            if spans is not None:
                spans.end(exc)
            raise
        if spans is not None:
            spans.end(None)
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
        return kinds

    async def _send_all(
        self, messages: Sequence[Message], spans: PublishSpans | None
    ) -> dict[str, int]:
        acks: list[asyncio.Future[Any]] = []
        kinds: dict[str, int] = {}
        async with asyncio.timeout(self.publish_timeout):
            for topic, logical, value, key, slot in messages:
                headers: list[tuple[str, bytes]] | None = None
                if logical == topics.EVENTS:
                    headers = EVENT_HEADERS
                elif spans is not None and topics.is_work(logical):
                    headers = spans.start(topic, value)
                try:
                    ack = await self.producer.send(
                        topic, value, key=key.encode() if key else None, headers=headers
                    )
                except TOO_LARGE as exc:  # the producer's own check
                    self._refused[slot] = f"the producer refused a message: {exc}"
                    raise
                # On a timeout the pending acks are abandoned, not cancelled (aiokafka owns
                # them); this keeps their late errors from being logged as never retrieved.
                ack.add_done_callback(_retrieve)
                acks.append(ack)
                kind = metrics.topic_kind(logical)
                kinds[kind] = kinds.get(kind, 0) + 1
            # asyncio.wait, unlike gather, does not cancel the acks if the timeout fires.
            await asyncio.wait(acks)
        for ack, message in zip(acks, messages, strict=True):
            if (error := ack.exception()) is not None:
                if isinstance(error, TOO_LARGE):
                    self._refused[message[4]] = f"the broker refused a message: {error}"
                raise error
        self._watch_offsets(messages, [ack.result() for ack in acks])
        return kinds

    def _watch_offsets(self, messages: Sequence[Message], written: Sequence[Any]) -> None:
        """Heal at once the queues whose partitions' logs went back (the broker lost them),
        and check the topics again before the next send (an auto-created one may have the
        wrong partition count)."""
        went_back = self._logs.acknowledged(
            (m[0], w.partition, w.offset) for m, w in zip(messages, written, strict=True)
        )
        if not went_back:
            return
        now = datetime.now(UTC)
        for topic, logical, *_ in messages:
            if topic in went_back and topics.is_work(logical):
                self.created_queues[topics.queue_of(logical)] = now
        for topic, partitions in went_back.items():
            log.warning(
                "the broker's log of %s went back: it lost messages; healing its queue",
                topic,
                extra={"partitions": sorted(partitions)},
            )
        metrics.LOGS_WENT_BACK.inc()
        self.forget_topics()

    def forget_topics(self) -> None:
        """Check the topics again before the next batch (after a failure)."""
        self._known_topics.clear()

    async def _ensure_topics(
        self, names: dict[str, int | None], *, logical_of: dict[str, str]
    ) -> None:
        """Create topics on first use (a newly declared queue), each with its declared
        partitions, so we never rely on broker auto-create."""
        missing = names.keys() - self._known_topics
        if missing:
            created = await kafka.ensure_topics_sized(
                self.kafka_settings, {name: names[name] for name in sorted(missing)}
            )
            if created:
                log.info("created topics", extra={"topics": created})
                now = datetime.now(UTC)
                for topic in created:
                    logical = logical_of.get(topic, "")
                    # Only a topic we published to before was lost; a new queue's first
                    # topic holds nothing to heal.
                    if topic in self._published_to and topics.is_work(logical):
                        self.created_queues[topics.queue_of(logical)] = now
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
            self._published_to |= missing


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
