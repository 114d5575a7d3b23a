"""The delivery loop: claim due deliveries, POST them, record each result.

A round claims up to ``webhook_batch_size`` due rows in one short transaction (each leased
for the request timeout plus a margin), sends them at most ``webhook_concurrency`` at a
time, and records each result in its own transaction as it comes back. An idle loop sleeps
until the next delivery is due, the poll interval passes, or the fan-out wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from jobline.core import jsontext
from jobline.pg import webhookstore
from jobline.pg.db import Database
from jobline.pg.queries import rowcount
from jobline.pg.webhookstore import Claimed, Result
from jobline_relay import metrics
from jobline_relay.settings import Settings
from jobline_relay.webhooks import sender

log = logging.getLogger(__name__)

# The lease beyond the request timeout: resolving, connecting and recording take time too.
LEASE_MARGIN_SECONDS: Final = 30.0
PURGE_BATCH: Final = 1000
PURGE_EVERY_SECONDS: Final = 60.0


class Deliverer:
    """Delivers due webhook deliveries until stopped."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.policy = settings.webhook_retry_policy
        self.addresses = settings.webhook_address_policy
        self.rng = random.Random()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._last_purge = 0.0
        self.last_error: str | None = None

    def wake(self) -> None:
        """New deliveries may be due: look now."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Keep up to ``webhook_concurrency`` attempts in flight: claim as many due
        deliveries as there are free slots, whenever a slot frees, a delivery falls due or
        the fan-out wakes the loop. A slow receiver holds its own slots, not a whole batch."""
        inflight: set[asyncio.Task[None]] = set()
        async with sender.make_client(
            self.settings.webhook_timeout_seconds, self.settings.webhook_concurrency
        ) as client:
            try:
                while not stop.is_set():
                    self._wake.clear()
                    free = self.settings.webhook_concurrency - len(inflight)
                    claimed = await self._claim_into(client, inflight, free)
                    if claimed and claimed == min(free, self.settings.webhook_batch_size):
                        continue  # as many as asked for: more may be due
                    await self._idle(stop, inflight, full=free <= claimed)
            finally:
                if inflight:  # attempts under way record their results
                    await asyncio.gather(*inflight, return_exceptions=True)

    async def _claim_into(
        self, client: httpx.AsyncClient, inflight: set[asyncio.Task[None]], free: int
    ) -> int:
        if free <= 0:
            return 0
        try:
            batch = await self._claim(min(free, self.settings.webhook_batch_size))
            await self._purge()
            self.last_error = None
        except Exception as exc:  # the database may be down: look again later
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("webhook delivery round failed: %s", self.last_error)
            return 0
        for claimed in batch:
            task = asyncio.create_task(self._deliver(client, claimed))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            task.add_done_callback(lambda _: self._wake.set())  # a slot is free
        return len(batch)

    async def _claim(self, limit: int) -> list[Claimed]:
        lease = self.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        async with self.db.transaction() as conn:
            return await webhookstore.claim_due(conn, limit, lease)

    async def round(self, client: httpx.AsyncClient) -> int:
        """Claim one batch and deliver all of it (tests drive the loop with this)."""
        batch = await self._claim(self.settings.webhook_batch_size)
        await asyncio.gather(*(self._deliver(client, claimed) for claimed in batch))
        return len(batch)

    async def _deliver(self, client: httpx.AsyncClient, claimed: Claimed) -> None:
        async with self._slots:
            attempt = await sender.post(
                client,
                self.addresses,
                url=claimed.url,
                msg_id=str(claimed.id),
                secrets=claimed.secrets,
                body=jsontext.dumps(claimed.payload),
            )
        metrics.WEBHOOK_ATTEMPTS.labels(result=attempt.kind).inc()
        metrics.WEBHOOK_LATENCY.observe(attempt.seconds)
        async with self.db.transaction() as conn:
            recorded = await webhookstore.record(
                conn,
                claimed,
                status_code=attempt.status_code,
                error=attempt.error,
                policy=self.policy,
                now=datetime.now(UTC),
                rng=self.rng,
            )
        if recorded.result in (Result.SUCCEEDED, Result.FAILED):
            metrics.WEBHOOK_DELIVERIES.labels(outcome=recorded.result.value).inc()
        extra = {
            "delivery_id": str(claimed.id),
            "endpoint_id": str(claimed.endpoint_id),
            "event_id": claimed.event_id,
            "attempt": claimed.attempts,
        }
        if attempt.error is not None:
            log.info(
                "webhook attempt %d failed (%s): %s",
                claimed.attempts,
                recorded.result.value,
                attempt.error,
                extra=extra,
            )
        if recorded.disabled:
            metrics.WEBHOOK_ENDPOINTS_DISABLED.inc()
            log.warning("webhook endpoint disabled after repeated failures", extra=extra)

    async def _idle(self, stop: asyncio.Event, inflight: set[Any], *, full: bool) -> None:
        """Until woken (a slot freed, the fan-out, stop) or, with a free slot, until the next
        delivery is due or the poll interval passes."""
        wait: float | None = self.settings.webhook_poll_interval_seconds
        if full:
            wait = None  # every slot busy: only a finished attempt (or stop) matters
        else:
            with contextlib.suppress(Exception):  # an unreachable database: poll as usual
                async with self.db.connection() as conn:
                    due = await webhookstore.SQL.fetchval(conn, "deliveries_next_due")
                if due is not None and wait is not None:
                    wait = max(0.0, min(wait, float(due)))
        if stop.is_set() or (wait is None and not inflight):
            return
        stopping = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopping, woken}, timeout=wait, return_when="FIRST_COMPLETED")
        finally:
            stopping.cancel()
            woken.cancel()

    async def _purge(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < PURGE_EVERY_SECONDS:
            return
        self._last_purge = now
        while True:
            async with self.db.connection() as conn:
                status = await webhookstore.SQL.execute(
                    conn,
                    "purge_deliveries",
                    retention_seconds=self.settings.webhook_delivery_retention_seconds,
                    limit=PURGE_BATCH,
                )
            if rowcount(status) < PURGE_BATCH:
                return
