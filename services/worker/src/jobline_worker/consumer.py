"""Consuming one queue's work topic: fetch within the free slots, track and commit offsets.

One consumer group per queue (``<prefix>.workers.<queue>``), manual commits. A message's
offset is *decided* once its claim is durable (or it was skipped or dead-lettered); the
committer commits, per partition, up to the lowest offset not yet decided (see
:mod:`jobline_worker.offsets`). In-flight work is bounded by pausing the partitions, never
by sitting in the poll loop, so heartbeats and rebalances go on while the slots are full.

A partition whose log ends before our position has started over (the broker lost it): the
consumer reads it again from the start as a new incarnation, and positions of the old log
are never committed into the new one (:mod:`jobline_worker.offsets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from jobline_worker import metrics
from jobline_worker.offsets import OffsetTracker, log_went_back, may_commit
from jobline_worker.slots import Slots

log = logging.getLogger("jobline.worker")

POLL_TIMEOUT_MS: Final = 200


class Incarnation(NamedTuple):
    """One life of a partition's log; ``epoch`` moves on when the log starts over."""

    tp: TopicPartition
    epoch: int


Batch = list[tuple[Incarnation, ConsumerRecord]]


class QueueConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consumer of one queue's work topic, its offsets and its rebalance hooks."""

    def __init__(self, queue: str, lanes: dict[str, int], consumer: AIOKafkaConsumer) -> None:
        self.queue = queue
        # The queue's topics (one per priority, see jobline.core.topics) and their priority.
        self.lanes = lanes
        self.consumer = consumer
        self.offsets: OffsetTracker[Incarnation] = OffsetTracker()
        self._epochs: dict[TopicPartition, int] = {}
        self._suspect_since_ms: int | None = None
        self._commit_lock = asyncio.Lock()

    def decide(self, part: Incarnation, offset: int) -> None:
        """The message at ``offset`` needs nothing more: its position may be committed.

        A decision about an older incarnation is ignored (that log is gone).
        """
        self.offsets.decide(part, offset)

    def incarnation(self, tp: TopicPartition) -> Incarnation:
        return Incarnation(tp, self._epochs.get(tp, 0))

    async def fetch_loop(
        self, slots: Slots, handle: Callable[[QueueConsumer, Batch], None]
    ) -> None:
        """Fetch as many messages as there are free slots and hand them to ``handle``, which
        starts their claim in the background: the next fetch overlaps this batch's claim."""
        consumer = self.consumer
        while True:
            try:
                free = slots.free
                if free <= 0:
                    # The priority lanes stay unpaused: the fetcher keeps their next messages
                    # buffered (one fetch per partition at most), so a slot that frees goes to
                    # them at once instead of after a fetch behind the plain topic's backlog.
                    plain = [tp for tp in consumer.assignment() if not self.lanes.get(tp.topic)]
                    if plain:
                        consumer.pause(*plain)
                    await slots.wait_for_free(timeout=1.0)
                    continue
                paused = consumer.paused()
                if paused:
                    consumer.resume(*paused)
                batches = await self._fetch_by_priority(free)
                taken: Batch = []
                for tp, records in batches:
                    for record in records:
                        # Another queue's loop may have taken slots while we waited: hand the
                        # excess back to the consumer by seeking to it, never overrun the bound.
                        if not slots.take():
                            consumer.seek(tp, record.offset)
                            break
                        part = self.incarnation(tp)
                        self.offsets.take(part, record.offset)
                        taken.append((part, record))
                if taken:
                    handle(self, taken)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fetch loop error", extra={"queue": self.queue})
                await asyncio.sleep(1.0)

    async def _fetch_by_priority(
        self, free: int
    ) -> list[tuple[TopicPartition, list[ConsumerRecord]]]:
        """Up to ``free`` messages, the highest priority lanes' first.

        A partition is first in, first out, so priority is the choice of partition: every
        lane that has messages buffered is asked, highest first, without waiting; only when
        none has any does the fetch wait for what arrives next. What arrives may hold more than
        ``free`` messages across lanes: sorted by lane, the caller takes the first ``free`` and
        seeks the rest back (the lowest lanes' messages are the ones left for later).
        """
        consumer = self.consumer
        lanes: dict[int, list[TopicPartition]] = {}
        for tp in consumer.assignment():
            priority = self.lanes.get(tp.topic, 0)
            # A lane that never held a message (most of them, where few priorities are used)
            # is not asked: with only the plain topic left this is the one fetch it always was.
            if priority and not consumer.highwater(tp):
                continue
            lanes.setdefault(priority, []).append(tp)
        if len(lanes) <= 1:
            fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=free)
            return list(fetched.items())
        ranked = sorted(lanes.items(), reverse=True)
        for _, partitions in ranked:
            fetched = await consumer.getmany(*partitions, timeout_ms=0, max_records=free)
            if fetched:
                return list(fetched.items())
        fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=free)
        if not fetched:
            return []
        # A higher lane's messages may have come in with the same response but were not
        # returned (aiokafka hands out at most ``free``): take them first.
        lowest = min(self.lanes.get(tp.topic, 0) for tp in fetched)
        higher = [tp for priority, parts in ranked if priority > lowest for tp in parts]
        if higher:
            more = await consumer.getmany(*higher, timeout_ms=0, max_records=free)
            for tp, records in more.items():  # a partition's next records follow its first
                fetched[tp] = [*fetched.get(tp, []), *records]
        return sorted(fetched.items(), key=lambda item: -self.lanes.get(item[0].topic, 0))

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit decided positions (of ``partitions``, default: all currently assigned)."""
        async with self._commit_lock:
            wanted = set(partitions if partitions is not None else self.consumer.assignment())
            moves = {
                part: pos
                for part, pos in self.offsets.to_commit().items()
                if part.tp in wanted
                and part == self.incarnation(part.tp)
                and may_commit(
                    pos,
                    self.consumer.highwater(part.tp),
                    self.consumer.last_poll_timestamp(part.tp),
                    self._suspect_since_ms,
                )
            }
            if not moves:
                return
            try:
                await self.consumer.commit({part.tp: pos for part, pos in moves.items()})
            except Exception as exc:  # a rebalance in progress, or the broker went away
                # The broker may come back empty: commit nothing until a fetch has shown
                # that the log still reaches the positions.
                self._suspect_since_ms = int(1000 * time.time())
                log.warning("offset commit failed: %s", exc, extra={"queue": self.queue})
                return
            self.offsets.committed(moves)

    async def check_logs(self) -> int:
        """Start over on every assigned partition whose log now ends before our position.

        The broker does not always say so (the embedded one answers a fetch beyond the end
        with nothing rather than "offset out of range"), so the fetch responses' high
        watermark is compared with our position. Returns how many partitions started over.
        """
        restarted = 0
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                async with asyncio.timeout(1.0):
                    position = await self.consumer.position(tp)
            except Exception:  # revoked meanwhile, or no position yet: nothing to compare
                continue
            if not log_went_back(position, highwater):
                continue
            old = self.incarnation(tp)
            self._epochs[tp] = old.epoch + 1
            self.offsets.forget([old])
            self.consumer.seek(tp, 0)
            restarted += 1
            metrics.PARTITIONS_RESTARTED.labels(self.queue).inc()
            log.warning(
                "partition %d ends at %d, before our position %d: the broker lost its log; "
                "reading it again from the start",
                tp.partition,
                highwater,
                position,
                extra={"queue": self.queue},
            )
        return restarted

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.commit(revoked)
        self.offsets.forget(self.incarnation(tp) for tp in revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info(
            "partitions assigned",
            extra={"queue": self.queue, "partitions": sorted(tp.partition for tp in assigned)},
        )

    def lag(self) -> int:
        """Messages after our position, from the fetch responses' high watermark.

        Not end_offsets(): the embedded broker (Tansu) answers ListOffsets with a count of
        record batches, not records. Partitions whose highwater we have not seen count as 0.
        """
        total = 0
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            position = self.offsets.position(self.incarnation(tp))
            if highwater is None or position is None:
                continue
            total += max(highwater - position, 0)
        return total

    async def close(self) -> None:
        await self.commit()
        with contextlib.suppress(Exception):
            await self.consumer.stop()
