"""Ingest: lifecycle events from the events topic into the analyzer's rollups, exactly once.

The consumer group is the analyzer's own. Each poll's records become one PostgreSQL
transaction: mark the event ids seen (only new ones count), add the batch to the rollups,
error counts, jobs and attempts, commit; only then commit the offsets. A crash in between
re-delivers the batch, and the seen ids make the second pass a no-op. Malformed records are
logged and skipped (they can never become valid), so one bad message cannot stall ingest.

``caught_up_at`` is the start of the last poll that drained what the broker had: events
published before it are in the rollups. The detection loop feeds no bucket that closes after
it, so a restart that replays a backlog does not feed half-filled buckets to the detectors
(they would read a stall). With several replicas each only knows its own partitions; the
close delay covers the usual lag between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.broker.kafka import make_consumer
from jobline.core import cloudevent as events
from jobline.core import topics
from jobline.core.errors import InvalidEvent
from jobline.core.workflows import WORKFLOW_EVENT_PREFIX
from jobline.pg import engine as db
from jobline_analyzer import metrics, rollup
from jobline_analyzer.settings import Settings
from jobline_analyzer.store import rollups as rollup_store

log = logging.getLogger("jobline.analyzer.ingest")


def decode_records(values: Iterable[bytes | None]) -> tuple[list[rollup.LifecycleEvent], int]:
    """Parse record values into lifecycle events; returns them and how many were invalid."""
    parsed: list[rollup.LifecycleEvent] = []
    invalid = 0
    for value in values:
        try:
            event = events.decode(value)
            if event.get_type().startswith(WORKFLOW_EVENT_PREFIX):
                continue  # a workflow's own lifecycle event: its nodes' job events count
            parsed.append(rollup.parse(event))
        except InvalidEvent as exc:
            invalid += 1
            log.warning("skipping an invalid event: %s", exc)
    return parsed, invalid


async def ingest_events(
    engine: AsyncEngine, batch_events: list[rollup.LifecycleEvent], bucket_seconds: int
) -> int:
    """Add events to the rollups in one transaction; return how many were new."""
    unique = list({e.id: e for e in batch_events}.values())
    async with db.transaction(engine) as conn:
        new_ids = await rollup_store.mark_seen(conn, [e.id for e in unique])
        fresh = [e for e in unique if e.id in new_ids]
        if fresh:
            await rollup_store.write_batch(conn, rollup.aggregate(fresh, bucket_seconds))
    metrics.EVENTS.labels("counted").inc(len(fresh))
    metrics.EVENTS.labels("duplicate").inc(len(batch_events) - len(fresh))
    return len(fresh)


class Ingestor:
    """Consume the events topic in the analyzer's group until stopped."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        *,
        group_id: str | None = None,
        consumer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.group_id = group_id or settings.analyzer_group
        self.consumer_overrides = consumer_overrides or {}
        self.counted = 0
        self.read = 0
        self.caught_up_at: datetime | None = None

    def _consumer(self) -> AIOKafkaConsumer:
        return make_consumer(
            self.settings,
            topics.events_topic(self.settings.topic_prefix),
            group_id=self.group_id,
            max_poll_records=self.settings.analyzer_batch_size,
            **self.consumer_overrides,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, ingest, commit; retry after errors (the database or broker may blip)."""
        while not stop.is_set():
            consumer = self._consumer()
            try:
                await consumer.start()
                await self._loop(consumer, stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingest failed; restarting the consumer in 1 s")
                await _sleep_or_stop(stop, 1.0)
            finally:
                await consumer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            polled_at = datetime.now(UTC)
            batches = await consumer.getmany(
                timeout_ms=self.settings.analyzer_poll_timeout_ms,
                max_records=self.settings.analyzer_batch_size,
            )
            records = [r for rs in batches.values() for r in rs]
            if not records:
                self.caught_up_at = polled_at
                continue
            parsed, invalid = decode_records(r.value for r in records)
            metrics.EVENTS.labels("invalid").inc(invalid)
            self.counted += await ingest_events(
                self.engine, parsed, self.settings.analyzer_bucket_seconds
            )
            self.read += len(records)
            # Offsets only after the rollup transaction committed: at-least-once delivery,
            # counted once thanks to the seen ids.
            await consumer.commit()
            if len(records) < self.settings.analyzer_batch_size:
                # The fetch buffer ran dry: everything published before the poll is in.
                self.caught_up_at = polled_at


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
