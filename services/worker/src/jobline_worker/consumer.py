"""Consuming one queue's work topic: fetch within the free slots, track and commit offsets.

One consumer group per queue (``<prefix>.workers.<queue>``), manual commits. A message's
offset is *decided* once its claim is durable (or it was skipped or dead-lettered); the
committer commits, per partition, up to the lowest offset not yet decided (see
:mod:`jobline_worker.offsets`). In-flight work is bounded by pausing the partitions, never
by sitting in the poll loop, so heartbeats and rebalances go on while the slots are full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from jobline_worker.offsets import OffsetTracker
from jobline_worker.slots import Slots

log = logging.getLogger("jobline.worker")

POLL_TIMEOUT_MS: Final = 200

Batch = list[tuple[TopicPartition, ConsumerRecord]]


class QueueConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consumer of one queue's work topic, its offsets and its rebalance hooks."""

    def __init__(self, queue: str, topic: str, consumer: AIOKafkaConsumer) -> None:
        self.queue = queue
        self.topic = topic
        self.consumer = consumer
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._commit_lock = asyncio.Lock()

    def decide(self, tp: TopicPartition, offset: int) -> None:
        """The message at ``offset`` needs nothing more: its position may be committed."""
        self.offsets.decide(tp, offset)

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
                    assigned = consumer.assignment()
                    if assigned:
                        consumer.pause(*assigned)
                    await slots.wait_for_free(timeout=1.0)
                    continue
                paused = consumer.paused()
                if paused:
                    consumer.resume(*paused)
                batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=free)
                taken: Batch = []
                for tp, records in batches.items():
                    for record in records:
                        # Another queue's loop may have taken slots while we waited: hand the
                        # excess back to the consumer by seeking to it, never overrun the bound.
                        if not slots.take():
                            consumer.seek(tp, record.offset)
                            break
                        self.offsets.take(tp, record.offset)
                        taken.append((tp, record))
                if taken:
                    handle(self, taken)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fetch loop error", extra={"queue": self.queue})
                await asyncio.sleep(1.0)

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit decided positions (of ``partitions``, default: all currently assigned)."""
        async with self._commit_lock:
            wanted = set(partitions if partitions is not None else self.consumer.assignment())
            moves = {tp: pos for tp, pos in self.offsets.to_commit().items() if tp in wanted}
            if not moves:
                return
            try:
                await self.consumer.commit(moves)
            except Exception as exc:  # a rebalance in progress; the next round retries
                log.warning("offset commit failed: %s", exc, extra={"queue": self.queue})
                return
            self.offsets.committed(moves)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.commit(revoked)
        self.offsets.forget(revoked)

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
            position = self.offsets.position(tp)
            if highwater is None or position is None:
                continue
            total += max(highwater - position, 0)
        return total

    async def close(self) -> None:
        await self.commit()
        with contextlib.suppress(Exception):
            await self.consumer.stop()
