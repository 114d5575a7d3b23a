"""The relay's background loops: publish the outbox, rescue expired leases, fire recurring
schedules (:mod:`jobline_relay.scheduler`), refresh gauges.

Started and stopped by the FastAPI lifespan (:mod:`jobline_relay.app`). Stopping lets the
batch in flight finish (commit) before the loops return, so SIGTERM loses nothing and
re-publishes nothing; a batch that overruns the grace period is cancelled, which rolls it
back (its rows are published again later: duplicates, never losses).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from jobline.broker import kafka
from jobline.core.backoff import BackoffKind, BackoffPolicy, delay_seconds
from jobline.core.errors import DependencyUnavailable
from jobline.pg import outbox
from jobline.pg.db import Database
from jobline_relay import gates, healer, lease_rescue, metrics
from jobline_relay.fairness import Fairness
from jobline_relay.publisher import Publisher
from jobline_relay.scheduler import Scheduler
from jobline_relay.settings import Settings
from jobline_relay.wakeup import Wakeup

log = logging.getLogger(__name__)


class Relay:
    """One relay replica: owns its producer, its LISTEN connection and its loops."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.wakeup = Wakeup(
            settings.plain_url, connect_timeout=settings.db_connect_timeout_seconds
        )
        self.retry = BackoffPolicy(
            BackoffKind.EXPONENTIAL_JITTER,
            settings.relay_retry_base_seconds,
            max(settings.relay_retry_max_seconds, settings.relay_retry_base_seconds),
        )
        self._last_poll = 0.0
        self._last_rows = 0.0  # when a batch last had rows (monotonic)
        self.last_error: str | None = None  # of the publish loop; None while it is healthy
        self.failing_since: float | None = None
        self._stopping = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._publisher: Publisher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        window = settings.relay_fair_window
        self.fairness = (
            Fairness(db, window, settings.relay_fair_interval_seconds) if window else None
        )

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.wakeup.run(), name="relay-listen"),
            asyncio.create_task(self._publish_loop(), name="relay-publish"),
            asyncio.create_task(
                self._every(
                    self.settings.lease_rescue_interval_seconds,
                    self._rescue,
                    "lease rescue",
                ),
                name="relay-lease-rescue",
            ),
            asyncio.create_task(
                self._every(
                    self.settings.relay_backlog_refresh_seconds, self._refresh_backlog, "backlog"
                ),
                name="relay-backlog",
            ),
            asyncio.create_task(
                self._every(self.settings.relay_heal_interval_seconds, self._heal, "healing"),
                name="relay-healer",
            ),
            asyncio.create_task(
                self._every(
                    self.settings.limit_release_interval_seconds,
                    lambda: gates.release_all(self.db),
                    "limit release",
                ),
                name="relay-limits",
            ),
        ]
        if self.fairness is not None:
            self._tasks.append(
                asyncio.create_task(
                    self._every(
                        self.settings.relay_fair_interval_seconds,
                        self._release_parked,
                        "fairness release",
                    ),
                    name="relay-fairness",
                )
            )
        if self.settings.scheduler_enabled:
            scheduler = Scheduler(
                self.db,
                batch_size=self.settings.scheduler_batch_size,
                defaults=self.settings.job_defaults,
                poll_interval=self.settings.scheduler_poll_interval_seconds,
            )
            self._tasks.append(
                asyncio.create_task(scheduler.run(self._stopping), name="relay-scheduler")
            )

    async def stop(self) -> None:
        """Finish the current batch, then stop every loop and close the producer."""
        self._stopping.set()
        self.wakeup.stop()
        _, pending = await asyncio.wait(
            self._tasks, timeout=self.settings.relay_shutdown_grace_seconds
        )
        for task in pending:
            log.warning("%s did not stop in time: cancelled (rolled back)", task.get_name())
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_producer()

    async def check(self) -> None:
        """Readiness of the relay itself: raises while publishing keeps failing."""
        if self.last_error is not None:
            since = time.monotonic() - (self.failing_since or time.monotonic())
            raise DependencyUnavailable(f"publishing failing for {since:.0f}s: {self.last_error}")
        if any(task.done() for task in self._tasks) and not self._stopping.is_set():
            raise DependencyUnavailable("a relay loop stopped unexpectedly")

    # --- publishing -------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        rng = random.Random()
        failures = 0
        batch_size = self.settings.relay_batch_size
        while not self._stopping.is_set():
            self.wakeup.clear()
            try:
                publisher = await self._ensure_publisher()
                result = await publisher.publish_batch()
            except Exception as exc:  # broker or database down: back off, keep the rows
                failures += 1
                self._record_failure(exc)
                if self._publisher is not None:
                    # A restarted broker may have lost topics (an in-memory dev broker does).
                    self._publisher.forget_topics()
                await self._sleep(delay_seconds(self.retry, failures, rng))
                continue
            if self._publisher is not None and self._publisher.created_queues:
                await self._heal_created()
            if failures:
                log.info("publishing again after %d failed attempts", failures)
            failures = 0
            self.last_error = self.failing_since = None
            if result.rows:
                self._last_rows = time.monotonic()
            if result.rows >= batch_size:
                continue  # more is due: drain on without waiting
            # A NOTIFY that arrived during the batch is kept (cleared before the take), so
            # this returns at once when more is due.
            await self.wakeup.wait(await self._idle_timeout())

    async def _ensure_publisher(self) -> Publisher:
        if self._publisher is None:
            producer = kafka.make_producer(
                self.settings,
                linger_ms=self.settings.relay_linger_ms,
                # A whole batch goes out at once: let a request carry many messages.
                max_batch_size=1024 * 1024,
                max_request_size=self.settings.relay_max_message_bytes,
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
            self._publisher = Publisher(
                self.db,
                producer,
                self.settings,
                batch_size=self.settings.relay_batch_size,
                publish_timeout=self.settings.relay_publish_timeout_seconds,
                max_message_bytes=self.settings.relay_max_message_bytes,
                hold_seconds=self.settings.relay_undeclared_hold_seconds,
                declared_ttl=self.settings.relay_declared_queues_ttl_seconds,
                fairness=self.fairness,
            )
        return self._publisher

    async def _release_parked(self) -> None:
        assert self.fairness is not None
        publisher = await self._ensure_publisher()
        try:
            await self.fairness.round(publisher.publish_parked)
        except Exception:
            publisher.forget_topics()  # as after a failed batch: the broker may have lost them
            raise

    async def _idle_timeout(self) -> float:
        """Until the next NOTIFY, the next poll, or the next delayed row falls due.

        The next delayed row is known from the NOTIFY payloads while the listener is up; the
        database is asked too once per poll interval (a NOTIFY may have been missed), and
        every time while the listener is down. Quiet rows (lifecycle events) send no NOTIFY
        (migration 0004), so while rows keep coming the relay looks again every event poll.
        """
        poll = self.settings.relay_poll_interval_seconds
        timeout = poll
        due, self.wakeup.next_due = self.wakeup.next_due, None
        if due is not None:
            timeout = min(timeout, max(due - time.time(), 0.0))
        now = time.monotonic()
        if now - self._last_rows < self.settings.relay_event_poll_window_seconds:
            timeout = min(timeout, self.settings.relay_event_poll_seconds)
        if self.wakeup.listening and now - self._last_poll < poll:
            return timeout
        self._last_poll = now
        try:
            async with self.db.connection() as conn:
                seconds = await outbox.seconds_until_next(conn)
        except Exception:  # the next claim will report it
            return timeout
        if seconds is not None:
            timeout = min(timeout, max(seconds, 0.0))
        return timeout

    def _record_failure(self, exc: Exception) -> None:
        error = type(exc).__name__
        metrics.PUBLISH_ERRORS.labels(error=error).inc()
        message = f"{error}: {exc}"
        if self.last_error is None:
            self.failing_since = time.monotonic()
            log.warning("publish failed, retrying with backoff: %s", message)
        self.last_error = message

    async def _close_producer(self) -> None:
        producer, self._producer, self._publisher = self._producer, None, None
        if producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await producer.stop()

    # --- periodic chores --------------------------------------------------------------

    async def _rescue(self) -> None:
        await lease_rescue.rescue_all(
            self.db,
            self.settings.lease_rescue_batch_size,
            retention=timedelta(seconds=self.settings.job_retention_seconds),
        )

    async def _heal(self) -> None:
        await healer.heal_all(
            self.db,
            after=self.settings.relay_heal_after_seconds,
            batch_size=self.settings.relay_heal_batch_size,
        )

    async def _heal_created(self) -> None:
        """A work topic had to be created: its queue's jobs queued before may be lost."""
        assert self._publisher is not None
        created, self._publisher.created_queues = self._publisher.created_queues, {}
        try:
            for queue, at in created.items():
                await healer.heal_all(
                    self.db,
                    after=0.0,
                    batch_size=self.settings.relay_heal_batch_size,
                    queues=[queue],
                    before=at,
                )
        except Exception as exc:  # the periodic round heals them later
            log.warning("healing a re-created queue failed: %s: %s", type(exc).__name__, exc)

    async def _refresh_backlog(self) -> None:
        async with self.db.connection() as conn:
            due, oldest = await outbox.backlog(conn)
        metrics.OUTBOX_BACKLOG.set(due)
        metrics.OUTBOX_OLDEST_AGE.set(oldest)

    async def _every(self, interval: float, chore: Callable[[], Awaitable[Any]], name: str) -> None:
        while not self._stopping.is_set():
            try:
                await chore()
            except Exception as exc:  # the database may be down: try again next round
                log.warning("%s failed: %s: %s", name, type(exc).__name__, exc)
            await self._sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
