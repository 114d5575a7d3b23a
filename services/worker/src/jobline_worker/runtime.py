"""The runtime: consume work topics, claim in PostgreSQL, run handlers, record outcomes.

Follows ARCHITECTURE.md "Delivery": Kafka delivers, PostgreSQL owns.

- One consumer group per queue (``<prefix>.workers.<queue>``), manual commits.
- Each message is claimed with one transaction (lock the job, check the message's attempt is
  the next one, guarded save of ``Claim``). Once that is durable the offset is decided; the
  committer commits, per partition, up to the lowest offset not yet decided.
- In-flight work (claiming + running) is bounded by ``concurrency``: when full, the consumer's
  partitions are paused, never held in the poll loop.
- While a handler runs its lease is renewed every third of the lease; a lost lease cancels the
  handler and drops its outcome, a cancel request cancels it and records ``Cancelled``.
- The outcome is recorded in one transaction, only if the attempt is still ours.
- Stop (SIGTERM via the FastAPI lifespan): stop fetching, give in-flight handlers the grace
  period, hand back the rest (``HandBack``: re-queued without losing an attempt), commit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID, uuid4

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline import db, jobstore, kafka, logs, topics
from jobline.envelope import InvalidEnvelope, WorkEnvelope
from jobline.states import (
    Cancelled,
    Claim,
    Event,
    Fail,
    HandBack,
    Job,
    JobState,
    Succeed,
    transition,
)
from jobline_worker import metrics, outcomes
from jobline_worker.context import JobContext
from jobline_worker.errors import PayloadInvalid, UnknownJobType
from jobline_worker.offsets import OffsetTracker
from jobline_worker.registry import JobSpec, Worker
from jobline_worker.settings import Settings

log = logging.getLogger("jobline.worker")
job_log = logging.getLogger("jobline.job")

# Records a job's progress in its metadata (``GET /v1/jobs/{id}`` shows it). Not a hot-path
# statement: one per progress() call. Guarded like renew_lease, so a worker that lost the
# job cannot overwrite the progress of the attempt that replaced it.
PROGRESS_SQL: Final = text(
    "UPDATE jobs SET metadata = jsonb_set(metadata, '{progress}', CAST(:progress AS jsonb)),"
    " updated_at = now()"
    " WHERE id = :id AND state = 'running' AND attempt = :attempt AND lease_owner = :worker_id"
)

# Wait between claim retries when PostgreSQL fails under us; capped.
CLAIM_RETRY_SECONDS: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
RECORD_ATTEMPTS: Final = 5
# An async handler that ignores cancellation gets this long before we stop waiting for it.
CANCEL_WAIT_SECONDS: Final = 2.0
POLL_TIMEOUT_MS: Final = 200


def default_worker_id() -> str:
    """host:pid:random -- unique per process, readable in job_attempts.worker_id."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"


@dataclass(eq=False)
class Execution:
    """One running attempt: the claimed job, its handler and how it is being stopped."""

    job: Job
    spec: JobSpec
    ctx: JobContext
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: outcomes.StopReason | None = None
    started: float = field(default_factory=time.monotonic)

    def request_stop(self, reason: outcomes.StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop.set()
            self.ctx.cancelled.set(reason.value)


class _Backend:
    """The runtime behind one context (heartbeat, progress)."""

    def __init__(self, runtime: Runtime, execution: Execution | None = None) -> None:
        self.runtime = runtime
        self.execution = execution

    async def heartbeat(self) -> bool:
        assert self.execution is not None
        return await self.runtime.renew(self.execution)

    async def progress(self, fraction: float, message: str | None) -> None:
        assert self.execution is not None
        await self.runtime.record_progress(self.execution, fraction, message)


class _QueueConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consumer of one queue's work topic, its offsets and its rebalance hooks."""

    def __init__(self, queue: str, topic: str, consumer: AIOKafkaConsumer) -> None:
        self.queue = queue
        self.topic = topic
        self.consumer = consumer
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self.commit_lock = asyncio.Lock()

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit decided positions (of ``partitions``, default: all currently assigned)."""
        async with self.commit_lock:
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
        # Lag from the fetch responses' high watermark, not end_offsets(): the embedded broker
        # (Tansu) answers ListOffsets with a count of record batches, not records. Partitions
        # whose highwater we have not seen yet count as no lag.
        total = 0
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            position = self.offsets.position(tp)
            if highwater is None or position is None:
                continue
            total += max(highwater - position, 0)
        return total


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
        self.lease_seconds = settings.worker_lease_seconds
        self.consumer_options = consumer_options or {}
        self.engine: AsyncEngine | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consumers: list[_QueueConsumer] = []
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="handler")
        self.running: dict[UUID, Execution] = {}
        self.in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._draining = False
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create missing topics, run startup hooks, join the consumer groups."""
        s = self.settings
        prefix = s.topic_prefix
        pool_size = max(s.db_pool_size, min(self.concurrency // 2, 50))
        self.engine = db.create_engine(
            s.model_copy(update={"db_pool_size": pool_size}), application_name="jobline-worker"
        )
        work_topics = [topics.work_topic(prefix, q) for q in self.queues]
        await kafka.ensure_topics(s, [*work_topics, topics.dlq_topic(prefix)])
        for hook in self.app.startup_hooks:
            await hook(s)
        self.producer = kafka.make_producer(s)
        await self.producer.start()
        options = {"fetch_max_wait_ms": 100, **self.consumer_options}
        for queue, topic in zip(self.queues, work_topics, strict=True):
            consumer = kafka.make_consumer(s, group_id=f"{prefix}.workers.{queue}", **options)
            queue_consumer = _QueueConsumer(queue, topic, consumer)
            consumer.subscribe([topic], listener=queue_consumer)
            await consumer.start()
            self.consumers.append(queue_consumer)
        self._started = True
        for queue_consumer in self.consumers:
            self._loops.append(asyncio.create_task(self._fetch_loop(queue_consumer)))
        self._loops.append(asyncio.create_task(self._commit_loop()))
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
        self._stopping.set()
        self._slot_freed.set()
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        grace = self.settings.worker_shutdown_grace_seconds
        if self._tasks:
            log.info(
                "draining",
                extra={"in_flight": len(self.running), "grace_seconds": grace},
            )
            await asyncio.wait(self._tasks, timeout=grace)
        for execution in list(self.running.values()):
            execution.request_stop(outcomes.StopReason.SHUTDOWN)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CANCEL_WAIT_SECONDS + 10)
        for queue_consumer in self.consumers:
            await queue_consumer.commit()
            with contextlib.suppress(Exception):
                await queue_consumer.consumer.stop()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        if self._started:
            for hook in self.app.shutdown_hooks:
                try:
                    await hook(self.settings)
                except Exception:
                    log.exception("shutdown hook failed")
        if self.engine is not None:
            await self.engine.dispose()
        # Threads of blocking handlers that ignored ctx.cancelled cannot be interrupted; their
        # jobs were handed back above, and we do not wait for them here.
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    # --- consuming ---------------------------------------------------------------------

    async def _fetch_loop(self, qc: _QueueConsumer) -> None:
        consumer = qc.consumer
        while not self._stopping.is_set():
            try:
                free = self.concurrency - self.in_flight
                if free <= 0:
                    assigned = consumer.assignment()
                    if assigned:
                        consumer.pause(*assigned)
                    self._slot_freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), 1.0)
                    continue
                paused = consumer.paused()
                if paused:
                    consumer.resume(*paused)
                batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=free)
                for tp, records in batches.items():
                    for record in records:
                        # Another queue's loop may have taken slots while we waited: hand the
                        # excess back to the consumer by seeking to it, never overrun the bound.
                        if self.in_flight >= self.concurrency:
                            consumer.seek(tp, record.offset)
                            break
                        qc.offsets.take(tp, record.offset)
                        self._begin(qc, tp, record)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fetch loop error", extra={"queue": qc.queue})
                await asyncio.sleep(1.0)

    async def _commit_loop(self) -> None:
        interval = self.settings.worker_commit_interval_seconds
        while True:
            await asyncio.sleep(interval)
            for qc in self.consumers:
                await qc.commit()
                metrics.CONSUMER_LAG.labels(qc.queue).set(qc.lag())

    def _begin(self, qc: _QueueConsumer, tp: TopicPartition, record: ConsumerRecord) -> None:
        self.in_flight += 1
        metrics.IN_FLIGHT.set(self.in_flight)
        task = asyncio.create_task(self._handle(qc, tp, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, qc: _QueueConsumer, tp: TopicPartition, record: ConsumerRecord) -> None:
        try:
            execution = await self._decide(qc, tp, record)
            if execution is not None:
                await self._execute(execution)
        except Exception:
            log.exception("unexpected error handling a message", extra={"queue": qc.queue})
        finally:
            self.in_flight -= 1
            metrics.IN_FLIGHT.set(self.in_flight)
            self._slot_freed.set()

    async def _decide(
        self, qc: _QueueConsumer, tp: TopicPartition, record: ConsumerRecord
    ) -> Execution | None:
        """Claim the message's job (or skip / dead-letter it); then its offset is decided."""
        try:
            envelope = WorkEnvelope.decode(record.value)
        except InvalidEnvelope as exc:
            await self._dead_letter(record, "undecodable", str(exc))
            qc.offsets.decide(tp, record.offset)
            return None
        for delay in (*CLAIM_RETRY_SECONDS, None):
            if self._draining:
                return None  # not decided: the next owner of the partition gets it
            try:
                execution, poison = await self._claim(qc, envelope)
                break
            except Exception as exc:
                if delay is None:
                    log.exception("claim failed; leaving the message undecided")
                    return None
                log.warning("claim failed, retrying in %gs: %s", delay, exc)
                await asyncio.sleep(delay)
        if poison:
            await self._dead_letter(record, "no_such_job", f"no job {envelope.id} in the database")
        qc.offsets.decide(tp, record.offset)
        return execution

    async def _claim(
        self, qc: _QueueConsumer, envelope: WorkEnvelope
    ) -> tuple[Execution | None, bool]:
        """One transaction. Returns (execution to run, message is poison)."""
        assert self.engine is not None
        now = datetime.now(UTC)
        async with db.transaction(self.engine) as conn:
            job = await jobstore.lock(conn, envelope.id)
            if job is None:
                return None, True
            if job.state is not JobState.QUEUED or job.attempt != envelope.attempt - 1:
                metrics.DUPLICATES.labels(qc.queue).inc()
                log.debug(
                    "duplicate or stale message skipped",
                    extra={"job_id": str(job.id), "state": job.state.value},
                )
                return None, False
            claim = Claim(self.worker_id, self.lease_seconds)
            claimed = transition(job, claim, now)
            await jobstore.save(conn, job, claim, claimed, now)
            spec = self.app.spec(job.type)
            if spec is None:
                # Claimed and failed at once, so the state machine writes the DLQ message and
                # the `dead` event: the job's history stays complete.
                error = UnknownJobType(
                    f"no handler for job type {job.type!r} on queue {job.queue!r}"
                )
                fail = outcomes.fail_for(error)
                await jobstore.save(
                    conn, claimed.job, fail, transition(claimed.job, fail, now), now
                )
                metrics.DLQ.labels("unknown_type").inc()
                return None, False
        running = claimed.job
        metrics.STARTED.labels(running.type, running.queue).inc()
        wait = (now - running.run_at).total_seconds()
        metrics.QUEUE_WAIT_SECONDS.labels(running.type).observe(max(wait, 0.0))
        return self._execution(running, spec), False

    def _execution(self, job: Job, spec: JobSpec) -> Execution:
        backend = _Backend(self)
        ctx = JobContext(
            job_id=job.id,
            type=job.type,
            queue=job.queue,
            tenant=job.tenant_id,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            timeout_seconds=spec.effective_timeout(job.timeout_seconds),
            logger=logs.for_job(job_log, str(job.id), job_type=job.type, attempt=job.attempt),
            backend=backend,
        )
        execution = Execution(job=job, spec=spec, ctx=ctx)
        backend.execution = execution
        return execution

    async def _dead_letter(self, record: ConsumerRecord, kind: str, reason: str) -> None:
        """Publish a message we cannot run to the DLQ topic, with where it came from."""
        assert self.producer is not None
        raw: bytes = record.value or b""
        try:
            value, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            value, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        body = {
            "kind": "poison",
            "reason": kind,
            "detail": reason,
            "source": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": record.key.decode("utf-8", "replace") if record.key else None,
            },
            "value": value,
            "value_encoding": encoding,
            "worker_id": self.worker_id,
            "dead_at": datetime.now(UTC).isoformat(),
        }
        await self.producer.send_and_wait(
            topics.dlq_topic(self.settings.topic_prefix),
            key=record.key,
            value=json.dumps(body, separators=(",", ":")).encode(),
        )
        metrics.DLQ.labels(kind).inc()
        log.warning(
            "poison message dead-lettered",
            extra={"reason": kind, "detail": reason, "offset": record.offset},
        )

    # --- running -----------------------------------------------------------------------

    async def _execute(self, execution: Execution) -> None:
        job = execution.job
        self.running[job.id] = execution
        renewer = asyncio.create_task(self._renew_loop(execution))
        try:
            outcome = await self._invoke(execution)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            self.running.pop(job.id, None)
        metrics.RUN_SECONDS.labels(job.type).observe(time.monotonic() - execution.started)
        event = outcomes.to_event(outcome, self.settings.worker_result_max_bytes)
        if event is None:
            self._lost(execution)
            return
        await self._record(execution, event)

    async def _invoke(self, execution: Execution) -> outcomes.Outcome:
        spec, ctx, job = execution.spec, execution.ctx, execution.job
        try:
            payload: Any = (
                spec.model.model_validate(job.payload) if spec.model is not None else job.payload
            )
        except ValidationError as exc:
            return outcomes.Raised(PayloadInvalid(f"payload does not match {spec.model}: {exc}"))
        loop = asyncio.get_running_loop()
        work: asyncio.Future[Any]
        if spec.is_async:
            work = asyncio.ensure_future(spec.func(ctx, payload))
        else:
            work = loop.run_in_executor(self.pool, functools.partial(spec.func, ctx, payload))
        stopper = asyncio.create_task(execution.stop.wait())
        try:
            done, _ = await asyncio.wait(
                {work, stopper}, timeout=ctx.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if work in done:
            if work.cancelled():
                return outcomes.Raised(asyncio.CancelledError("the handler cancelled itself"))
            error = work.exception()
            return outcomes.Raised(error) if error is not None else outcomes.Returned(work.result())
        ctx.cancelled.set(execution.stop_reason.value if execution.stop_reason else "timeout")
        work.cancel()
        if spec.is_async:
            await asyncio.wait({work}, timeout=CANCEL_WAIT_SECONDS)
        if execution.stop_reason is not None:
            return outcomes.Stopped(execution.stop_reason)
        return outcomes.TimedOut(ctx.timeout_seconds)

    async def _renew_loop(self, execution: Execution) -> None:
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            await self.renew(execution)

    async def renew(self, execution: Execution) -> bool:
        """Extend the lease; stop the handler if the job is lost or its cancel was requested."""
        assert self.engine is not None
        job = execution.job
        try:
            async with db.transaction(self.engine) as conn:
                ours, cancel = await jobstore.renew_lease(
                    conn, job.id, job.attempt, self.worker_id, self.lease_seconds
                )
        except Exception as exc:  # the lease may still hold; try again next round
            execution.ctx.logger.warning("lease renewal failed: %s", exc)
            return True
        if not ours:
            execution.ctx.logger.warning("lease lost; stopping the handler")
            execution.request_stop(outcomes.StopReason.LEASE_LOST)
        elif cancel:
            execution.ctx.logger.info("cancel requested; stopping the handler")
            execution.request_stop(outcomes.StopReason.CANCEL_REQUESTED)
        return ours

    async def record_progress(
        self, execution: Execution, fraction: float, message: str | None
    ) -> None:
        """Store progress in the job's metadata (and log it)."""
        assert self.engine is not None
        job = execution.job
        progress = {
            "fraction": fraction,
            "message": message,
            "attempt": job.attempt,
            "at": datetime.now(UTC).isoformat(),
        }
        async with db.transaction(self.engine) as conn:
            await conn.execute(
                PROGRESS_SQL,
                {
                    "progress": json.dumps(progress),
                    "id": job.id,
                    "attempt": job.attempt,
                    "worker_id": self.worker_id,
                },
            )
        execution.ctx.logger.info("progress %.0f%%", fraction * 100, extra={"progress": progress})

    async def _record(self, execution: Execution, event: Event) -> None:
        """Write the outcome in one transaction, only if the attempt is still ours."""
        assert self.engine is not None
        claimed = execution.job
        for attempt in range(RECORD_ATTEMPTS):
            try:
                now = datetime.now(UTC)
                async with db.transaction(self.engine) as conn:
                    job = await jobstore.lock(conn, claimed.id)
                    if (
                        job is None
                        or job.state is not JobState.RUNNING
                        or job.attempt != claimed.attempt
                        or job.lease_owner != self.worker_id
                    ):
                        self._lost(execution)
                        return
                    final = outcomes.apply_policy(event, job, execution.spec)
                    result = transition(job, final, now)
                    await jobstore.save(conn, job, final, result, now)
                break
            except Exception:
                if attempt == RECORD_ATTEMPTS - 1:
                    # The lease will expire and the relay re-queues the job: not lost.
                    execution.ctx.logger.exception("could not record the outcome; giving up")
                    return
                await asyncio.sleep(0.2 * 2**attempt)
        state = result.job.state
        metrics.FINISHED.labels(claimed.type, _outcome_label(final)).inc()
        if state is JobState.RETRYING:
            metrics.RETRIES.labels(claimed.type).inc()
        elif state is JobState.DEAD:
            metrics.DLQ.labels("dead").inc()
        execution.ctx.logger.info(
            "attempt finished",
            extra={"outcome": _outcome_label(final), "state": state.value},
        )

    def _lost(self, execution: Execution) -> None:
        metrics.LEASE_LOST.inc()
        metrics.FINISHED.labels(execution.job.type, "lease_lost").inc()
        execution.ctx.logger.warning("the attempt is no longer ours; its outcome is dropped")


def _outcome_label(event: Event) -> str:
    match event:
        case Succeed():
            return "succeeded"
        case Fail(outcome=outcome):
            return outcome.value
        case Cancelled():
            return "cancelled"
        case HandBack():
            return "handed_back"
    return type(event).__name__.lower()
