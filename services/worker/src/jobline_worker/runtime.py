"""The runtime: wires consuming, claiming, running, leases and completion for one process.

Follows ARCHITECTURE.md "Delivery": Kafka delivers, PostgreSQL owns. Each concern has its
module: :mod:`~jobline_worker.consumer` (fetch within the slots, offsets),
:mod:`~jobline_worker.claims` (decide and write claims), :mod:`~jobline_worker.execution`
(handlers, timeouts, stopping), :mod:`~jobline_worker.leases` (renewal, cancel requests),
:mod:`~jobline_worker.completion` (record outcomes), :mod:`~jobline_worker.poison`.

Stop (SIGTERM via the HTTP app's lifespan): stop fetching, give running handlers the grace
period, hand back the rest (``HandBack``: re-queued without losing an attempt), record every
outcome, commit offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from jobline.broker import kafka
from jobline.core import topics
from jobline.observe import tracing
from jobline.pg import jobstore
from jobline.pg.db import Database
from jobline_worker import metrics, registration
from jobline_worker import tracing as run_spans
from jobline_worker.claims import Claimed, Claimer
from jobline_worker.completion import Completer
from jobline_worker.consumer import Batch, QueueConsumer
from jobline_worker.context import JobContext
from jobline_worker.errors import PayloadInvalid
from jobline_worker.execution import CANCEL_WAIT_SECONDS, Execution, Executor
from jobline_worker.leases import LeaseKeeper
from jobline_worker.outcomes import StopReason
from jobline_worker.overrides import LimitOverrides
from jobline_worker.poison import Poison
from jobline_worker.registry import Worker
from jobline_worker.settings import Settings
from jobline_worker.slots import Slots

log = logging.getLogger("jobline.worker")


def default_worker_id() -> str:
    """host:pid:random -- unique per process, readable in job_attempts.worker_id."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"


class Runtime:
    """Serves ``queues`` with the handlers of ``app``; start() then stop()."""

    def __init__(
        self,
        settings: Settings,
        app: Worker,
        queues: list[str],
        concurrency: int,
        *,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        if not queues:
            raise ValueError("the worker needs at least one queue")
        self.settings = settings
        self.app = app
        self.queues = [topics.validate_queue_name(q) for q in dict.fromkeys(queues)]
        self.concurrency = concurrency
        self.worker_id = settings.worker_id or default_worker_id()
        self.consumer_options = consumer_options or {}
        pool_size = max(settings.db_pool_size, min(concurrency // 2, 50))
        self.db = Database(settings, application_name="jobline-worker", max_size=pool_size)
        self.slots = Slots(concurrency)
        self.executor = Executor(self._report, threads=concurrency)
        self.leases = LeaseKeeper(
            self.db, self.worker_id, settings.worker_lease_seconds, self._stop_job
        )
        self.completer = Completer(
            self.db,
            self.worker_id,
            result_max_bytes=settings.worker_result_max_bytes,
            error_max_bytes=settings.worker_error_max_bytes,
            retention=timedelta(seconds=settings.job_retention_seconds),
            done=self._done,
        )
        self.consumers: list[QueueConsumer] = []
        self.producer: AIOKafkaProducer | None = None
        self.claimer: Claimer | None = None
        self._claims: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._draining = False
        self._hand_back_all = False
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create missing topics, run startup hooks, join the consumer groups."""
        s = self.settings
        prefix = s.topic_prefix
        await self.db.open()
        # Declared and registered before consuming: the gateway admits these types from now.
        sizes = await registration.register(self.db, self.app, self.queues, self.worker_id)
        await kafka.ensure_topics_sized(
            s, {**registration.work_topic_sizes(prefix, sizes), topics.dlq_topic(prefix): None}
        )
        for hook in self.app.startup_hooks:
            await hook(s)
        self.producer = kafka.make_producer(s)
        await self.producer.start()
        overrides = LimitOverrides(
            self.db, [spec.type for spec in self.app], s.worker_limits_refresh_seconds
        )
        await overrides.refresh()  # before the first claim: no job starts under stale limits
        self.claimer = Claimer(
            self.db,
            self.app,
            self.worker_id,
            s.worker_lease_seconds,
            Poison(self.producer, prefix, self.worker_id),
            draining=lambda: self._draining,
            overrides=overrides,
        )
        options = {"fetch_max_wait_ms": s.worker_fetch_max_wait_ms, **self.consumer_options}
        for queue in self.queues:
            consumer = kafka.make_consumer(s, group_id=f"{prefix}.workers.{queue}", **options)
            queue_consumer = QueueConsumer(queue, topics.lanes(prefix, queue), consumer)
            consumer.subscribe(list(queue_consumer.lanes), listener=queue_consumer)
            await consumer.start()
            self.consumers.append(queue_consumer)
        self._started = True
        for qc in self.consumers:
            self._loops.append(asyncio.create_task(qc.fetch_loop(self.slots, self._claim)))
        self._loops.append(asyncio.create_task(self._commit_loop()))
        # Not among _loops: they outlive fetching until every outcome of a drain is recorded.
        self._background = [
            asyncio.create_task(self.completer.run()),
            asyncio.create_task(self.leases.run()),
            asyncio.create_task(overrides.run()),
        ]
        log.info(
            "worker started",
            extra={
                "worker_id": self.worker_id,
                "queues": self.queues,
                "concurrency": self.concurrency,
                "handlers": [spec.type for spec in self.app],
            },
        )

    async def stop(self) -> None:
        """Drain: stop fetching, let handlers finish within the grace, hand back the rest."""
        self._draining = True
        self.slots.wake()
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        grace = self.settings.worker_shutdown_grace_seconds
        if self.slots.used:
            log.info("draining", extra={"in_flight": self.slots.used, "grace_seconds": grace})
            await self._until_idle(grace)
        # From here on an execution is handed back as soon as it starts (a batch claim that
        # committed during the grace starts its executions afterwards).
        self._hand_back_all = True
        self.executor.stop_all(StopReason.SHUTDOWN)
        await self._until_idle(CANCEL_WAIT_SECONDS + 10)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for qc in self.consumers:
            await qc.close()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        if self._started:
            for hook in self.app.shutdown_hooks:
                try:
                    await hook(self.settings)
                except Exception:
                    log.exception("shutdown hook failed")
        await self.db.close()
        self.executor.shutdown()
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    async def _until_idle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until no message is being claimed, run or recorded, or ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.slots.used > 0 and loop.time() < deadline:
            await self.slots.wait_released(timeout=min(0.1, deadline - loop.time()))

    # --- the path of a message ------------------------------------------------------------

    def _claim(self, qc: QueueConsumer, batch: Batch) -> None:
        assert self.claimer is not None
        self._spawn(self.claimer.claim_batch(qc, batch, self._start, self.slots.release))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    def _start(self, claimed: Claimed) -> None:
        job, spec = claimed.job, claimed.spec
        span = None
        if tracing.enabled():
            record = claimed.delivery.record
            span = run_spans.start_run_span(
                job,
                record.topic,
                run_spans.header_traceparent(record.headers),
                claimed.delivery.received_ns,
            )
        ctx = JobContext(
            job_id=job.id,
            type=job.type,
            queue=job.queue,
            tenant=job.tenant_id,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            timeout_seconds=spec.effective_timeout(job.timeout_seconds),
            backend=self.leases,
            traceparent=tracing.traceparent_of(span) if span is not None else job.traceparent,
            workflow_id=job.workflow_id,
            parent_results=claimed.parents or {},
        )
        execution = Execution(job=job, spec=spec, ctx=ctx, span=span)
        self.leases.hold(job.id, job.attempt)
        try:
            payload = spec.model.model_validate(job.payload) if spec.model else job.payload
        except ValidationError as exc:
            self.executor.fail_now(
                execution, PayloadInvalid(f"payload does not match {spec.model}: {exc}")
            )
            return
        self.executor.start(execution, payload)
        if self._hand_back_all:
            self.executor.stop(execution, StopReason.SHUTDOWN)

    def _report(self, execution: Execution, outcome: Any) -> None:
        self.completer.report(execution, outcome)

    def _done(self, execution: Execution) -> None:
        self.leases.release(execution.job.id)
        self.slots.release(1)

    def _stop_job(self, job_id: UUID, reason: StopReason) -> None:
        execution = self.executor.running.get(job_id)
        if execution is None or execution.stop_reason is not None:
            return
        if reason is StopReason.LEASE_LOST:
            metrics.LEASE_LOST.inc()
            execution.ctx.logger.warning("lease lost; stopping the handler")
        else:
            execution.ctx.logger.info("%s; stopping the handler", reason.value)
        self.executor.stop(execution, reason)

    async def _commit_loop(self) -> None:
        interval = self.settings.worker_commit_interval_seconds
        while True:
            await asyncio.sleep(interval)
            for qc in self.consumers:
                await qc.check_logs()
                await qc.commit()
                metrics.CONSUMER_LAG.labels(qc.queue).set(qc.lag())

    # --- for tests and the readiness check ------------------------------------------------

    @property
    def running(self) -> dict[UUID, Execution]:
        return self.executor.running


__all__ = ["Runtime", "default_worker_id", "jobstore"]
