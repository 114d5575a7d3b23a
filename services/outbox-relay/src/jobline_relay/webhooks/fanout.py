"""The fan-out: lifecycle events from the events topic become delivery rows.

Consumes ``<prefix>.events`` in the group ``<prefix>.webhooks``. For a batch of records it
finds the enabled endpoints of the events' tenants in one query, keeps the events each
endpoint subscribed to (and that happened since it was created: a new endpoint is not
flooded with the topic's history), inserts their deliveries (``ON CONFLICT DO NOTHING`` on
endpoint and event id), commits, and only then commits the offsets. A crash in between
consumes the batch again, which inserts nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiokafka import AIOKafkaConsumer

from jobline.broker.kafka import make_consumer
from jobline.core import cloudevent, topics
from jobline.core.errors import InvalidEvent
from jobline.core.webhooks import matching
from jobline.pg import webhookstore
from jobline.pg.db import Database
from jobline.pg.webhookstore import NewDelivery
from jobline_relay import metrics
from jobline_relay.settings import Settings

log = logging.getLogger(__name__)

MAX_RECORDS: Final = 500
# How often the fan-out asks whether any endpoint is enabled: a new installation's first
# endpoint starts receiving within this long (events are read from the group's committed
# offsets, so none that happened after the endpoint was created are missed).
IDLE_CHECK_SECONDS: Final = 2.0


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    tenant: str
    time: datetime
    text: str  # the record's JSON, delivered as it is


def parse(value: bytes | None) -> Event | None:
    """A lifecycle event of a record, or None (logged) for anything else."""
    try:
        event = cloudevent.decode(value)
        tenant = cloudevent.data_of(event).get("tenant")
        time = event.get_time()
    except InvalidEvent as exc:
        log.warning("webhooks: skipping an invalid event: %s", exc)
        return None
    if not isinstance(tenant, str) or time is None or value is None:
        return None
    return Event(event.get_id(), event.get_type(), tenant, time, value.decode())


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}.webhooks"


class Fanout:
    """Consumes the events topic until stopped."""

    def __init__(self, settings: Settings, db: Database, *, wake: Callable[[], None]) -> None:
        self.settings = settings
        self.db = db
        self.wake = wake

    def _consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return make_consumer(
            s,
            topics.events_topic(s.topic_prefix),
            group_id=group_id(s),
            max_poll_records=MAX_RECORDS,
            fetch_max_wait_ms=s.webhook_fetch_max_wait_ms,
            session_timeout_ms=s.webhook_kafka_session_timeout_ms,
            heartbeat_interval_ms=s.webhook_kafka_heartbeat_interval_ms,
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await self._wanted():
                await _sleep_or_stop(stop, IDLE_CHECK_SECONDS)
                continue
            consumer = self._consumer()
            try:
                await consumer.start()
                await self._loop(consumer, stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook fan-out failed; restarting its consumer in 1 s")
                await _sleep_or_stop(stop, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _wanted(self) -> bool:
        """Whether any endpoint is enabled (a database error counts as yes: the loop reports it)."""
        try:
            async with self.db.connection() as conn:
                return bool(await webhookstore.SQL.fetchval(conn, "any_enabled_endpoint"))
        except Exception:
            return True

    async def _loop(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """Fan out until stopped, or until no endpoint is enabled any more (then the consumer
        stops with its offsets committed, and resumes from them when one is enabled again)."""
        checked = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - checked >= IDLE_CHECK_SECONDS:
                checked = time.monotonic()
                if not await self._wanted():
                    return
            batches = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            created = await self.fan_out(r.value for r in records)
            await consumer.commit()
            if created:
                self.wake()

    async def fan_out(self, values: Iterable[bytes | None]) -> int:
        """Delivery rows for the events among ``values``; returns how many were matched."""
        events = [e for e in map(parse, values) if e is not None]
        if not events:
            return 0
        tenants = sorted({e.tenant for e in events})
        async with self.db.transaction() as conn:
            endpoints = await webhookstore.SQL.fetch(conn, "endpoints_of_tenants", tenants=tenants)
            if not endpoints:
                return 0
            by_tenant: dict[str, list[Any]] = {}
            for endpoint in endpoints:
                by_tenant.setdefault(endpoint["tenant_id"], []).append(endpoint)
            rows = [
                NewDelivery(endpoint["id"], event.id, event.type, event.text)
                for event in events
                for endpoint in by_tenant.get(event.tenant, ())
                if event.time >= endpoint["created_at"]
                and matching.matches(endpoint["event_types"], event.type)
            ]
            await webhookstore.insert_deliveries(conn, rows)
        metrics.WEBHOOK_FANNED_OUT.inc(len(rows))
        return len(rows)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
