"""The runtime: consume work topics, claim in PostgreSQL, run handlers, record outcomes.

Follows ARCHITECTURE.md "Delivery": Kafka delivers, PostgreSQL owns.

- One consumer group per queue (``<prefix>.workers.<queue>``), manual commits.
- The messages of one fetch are claimed together in one transaction: lock their jobs (one
  ``FOR UPDATE`` in id order), decide each message with the pure state machine (is its attempt
  the next one?), write every claim with one guarded multi-row UPDATE plus one outbox INSERT
  and one job_attempts INSERT. Once that commit is durable their offsets are decided; the
  committer commits, per partition, up to the lowest offset not yet decided. A batch that
  fails is retried message by message, so one bad message cannot hold the others back.
- In-flight work (claiming + running) is bounded by ``concurrency``: when full, the consumer's
  partitions are paused, never held in the poll loop.
- While a handler runs its lease is renewed every third of the lease; a lost lease cancels the
  handler and drops its outcome, a cancel request cancels it and records ``Cancelled``.
- Outcomes go to one completer task that records whatever has finished meanwhile in one
  transaction (group commit: no added wait when idle, bigger groups under load), each job
  still guarded on its attempt and lease owner; a group that fails is recorded job by job.
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

from jobline.broker import kafka
from jobline.core import topics
from jobline.core.envelope import InvalidEnvelope, WorkEnvelope
from jobline.core.states import (
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
from jobline.observe import logs
from jobline.pg import db, jobstore
from jobline_worker import metrics, outcomes
from jobline_worker.context import JobContext
from jobline_worker.errors import PayloadInvalid, UnknownJobType
from jobline_worker.offsets import OffsetTracker
from jobline_worker.registry import JobSpec, Worker
from jobline_worker.settings import Settings

# Why batches: a claim or an outcome used to cost a transaction of its own (BEGIN, lock,
# update, outbox insert, attempt row, COMMIT: six round trips, plus three for the pool's
# pre-ping). Per batch the count of statements is the same, whatever the batch size.

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
# The most outcomes one completer transaction records (bounds its lock set and statement size).
MAX_OUTCOME_GROUP: Final = 256


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


@dataclass(eq=False, slots=True)
class _Delivery:
    """One fetched message that decoded to a work envelope, and where it came from."""

    tp: TopicPartition
    record: ConsumerRecord
    envelope: WorkEnvelope


# What a claim decided for one message, besides "run this execution".
_SKIPPED: Final = "skipped"  # duplicate or stale: offset decided, nothing to run
_POISON: Final = "poison"  # no such job: dead-letter the message, then decide
_Decision = Execution | str


@dataclass(eq=False, slots=True)
class _Outcome:
    """A finished attempt waiting for the completer; ``done`` says what was recorded."""

    execution: Execution
    event: Event
    done: asyncio.Future[tuple[Event, JobState] | None]


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
        self._outcomes: asyncio.Queue[_Outcome] = asyncio.Queue()
        self._completer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._draining = False
        self._hand_back_all = False
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
        # Not one of _loops: it must outlive the fetch loops until every handler's outcome
        # (including the hand-backs of a drain) is recorded.
        self._completer = asyncio.create_task(self._complete_loop())
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
            await self._wait_for_tasks(grace)
        # From here on an execution is handed back as soon as it starts (a batch claim that
        # committed during the grace starts its executions as new tasks).
        self._hand_back_all = True
        for execution in list(self.running.values()):
            execution.request_stop(outcomes.StopReason.SHUTDOWN)
        if self._tasks:
            await self._wait_for_tasks(CANCEL_WAIT_SECONDS + 10)
        if self._completer is not None:
            self._completer.cancel()
            await asyncio.gather(self._completer, return_exceptions=True)
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

    async def _wait_for_tasks(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait up to ``timeout`` for every task, including tasks started meanwhile (a batch
        claim that commits spawns its executions as new tasks)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            await asyncio.wait(
                set(self._tasks), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )

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
                taken: list[tuple[TopicPartition, ConsumerRecord]] = []
                for tp, records in batches.items():
                    for record in records:
                        # Another queue's loop may have taken slots while we waited: hand the
                        # excess back to the consumer by seeking to it, never overrun the bound.
                        if self.in_flight >= self.concurrency:
                            consumer.seek(tp, record.offset)
                            break
                        qc.offsets.take(tp, record.offset)
                        self.in_flight += 1  # one slot per message until it is done
                        taken.append((tp, record))
                if taken:
                    metrics.IN_FLIGHT.set(self.in_flight)
                    self._spawn(self._claim_batch(qc, taken))
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

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self, slots: int = 1) -> None:
        self.in_flight -= slots
        metrics.IN_FLIGHT.set(self.in_flight)
        self._slot_freed.set()

    async def _claim_batch(
        self, qc: _QueueConsumer, taken: list[tuple[TopicPartition, ConsumerRecord]]
    ) -> None:
        """Claim one fetch's messages together; start the claimed, decide every offset.

        Holds one slot per message; each execution takes its slot over until it is done.
        """
        slots = len(taken)
        try:
            deliveries: list[_Delivery] = []
            for tp, record in taken:
                try:
                    envelope = WorkEnvelope.decode(record.value)
                except InvalidEnvelope as exc:
                    if await self._dead_letter_safely(record, "undecodable", str(exc)):
                        qc.offsets.decide(tp, record.offset)
                    continue
                deliveries.append(_Delivery(tp, record, envelope))
            decisions = await self._claim_retrying(qc, deliveries)
            if decisions is None:
                return  # draining or PostgreSQL is gone: undecided, the next owner gets them
            for delivery, decision in zip(deliveries, decisions, strict=True):
                if decision is None:
                    continue  # this one could not be claimed: left undecided
                if decision == _POISON:
                    envelope = delivery.envelope
                    detail = f"no job {envelope.id} in the database"
                    if not await self._dead_letter_safely(delivery.record, "no_such_job", detail):
                        continue
                qc.offsets.decide(delivery.tp, delivery.record.offset)
                if isinstance(decision, Execution):
                    slots -= 1
                    self._spawn(self._run(decision))
        except Exception:
            log.exception("unexpected error claiming messages", extra={"queue": qc.queue})
        finally:
            if slots:
                self._release(slots)

    async def _dead_letter_safely(self, record: ConsumerRecord, kind: str, reason: str) -> bool:
        """Dead-letter ``record``; False (its offset stays undecided) if the broker failed."""
        try:
            await self._dead_letter(record, kind, reason)
        except Exception:
            log.exception("could not dead-letter a message; leaving it undecided")
            return False
        return True

    async def _claim_retrying(
        self, qc: _QueueConsumer, deliveries: list[_Delivery]
    ) -> list[_Decision | None] | None:
        """The decisions for ``deliveries`` (None: not decided), retrying when PG fails.

        A batch that fails is split: each message is retried on its own (in parallel), so a
        message that keeps failing delays only its own offset, as before batching.
        """
        if not deliveries:
            return []
        for delay in (*CLAIM_RETRY_SECONDS, None):
            if self._draining:
                return None
            try:
                return list(await self._claim(qc, deliveries))
            except Exception as exc:
                if len(deliveries) > 1:
                    log.warning("batch claim failed, claiming one by one: %s", exc)
                    singles = await asyncio.gather(
                        *(self._claim_retrying(qc, [d]) for d in deliveries)
                    )
                    return [single[0] if single else None for single in singles]
                if delay is None:
                    log.exception("claim failed; leaving the message undecided")
                    return None
                log.warning("claim failed, retrying in %gs: %s", delay, exc)
                await asyncio.sleep(delay)
        return None  # pragma: no cover - the loop returns

    async def _claim(self, qc: _QueueConsumer, deliveries: list[_Delivery]) -> list[_Decision]:
        """One transaction for all ``deliveries``: a decision per delivery, in order."""
        assert self.engine is not None
        now = datetime.now(UTC)
        decisions: list[_Decision] = []
        writes: list[jobstore.Write] = []
        started: list[tuple[int, Job, JobSpec]] = []  # (index in deliveries, job, spec)
        unknown: list[Job] = []
        duplicates = 0
        async with db.transaction(self.engine) as conn:
            jobs = await jobstore.lock_many(conn, {d.envelope.id for d in deliveries})
            for delivery in deliveries:
                envelope = delivery.envelope
                job = jobs.get(envelope.id)
                if job is None:
                    decisions.append(_POISON)
                    continue
                # The pure machine decides on the row as locked -- or as this batch has already
                # moved it: a second copy of a message in the same fetch sees `running` and is
                # skipped like any duplicate.
                if job.state is not JobState.QUEUED or job.attempt != envelope.attempt - 1:
                    duplicates += 1
                    log.debug(
                        "duplicate or stale message skipped",
                        extra={"job_id": str(job.id), "state": job.state.value},
                    )
                    decisions.append(_SKIPPED)
                    continue
                claim = Claim(self.worker_id, self.lease_seconds)
                claimed = transition(job, claim, now)
                jobs[job.id] = claimed.job
                writes.append(jobstore.Write(job, claim, claimed))
                spec = self.app.spec(job.type)
                if spec is None:
                    unknown.append(claimed.job)
                    decisions.append(_SKIPPED)
                else:
                    started.append((len(decisions), claimed.job, spec))
                    decisions.append(_SKIPPED)  # replaced by its execution after the commit
            await jobstore.save_many(conn, writes, now)
            for running in unknown:
                # Claimed and failed at once, so the state machine writes the DLQ message and
                # the `dead` event: the job's history stays complete. Rare: one job at a time.
                error = UnknownJobType(
                    f"no handler for job type {running.type!r} on queue {running.queue!r}"
                )
                fail = outcomes.fail_for(error)
                await jobstore.save(conn, running, fail, transition(running, fail, now), now)
        # Durable from here on: count, and turn the claims into executions.
        if duplicates:
            metrics.DUPLICATES.labels(qc.queue).inc(duplicates)
        if unknown:
            metrics.DLQ.labels("unknown_type").inc(len(unknown))
        for index, running, spec in started:
            metrics.STARTED.labels(running.type, running.queue).inc()
            wait = (now - running.run_at).total_seconds()
            metrics.QUEUE_WAIT_SECONDS.labels(running.type).observe(max(wait, 0.0))
            decisions[index] = self._execution(running, spec)
        return decisions

    async def _run(self, execution: Execution) -> None:
        try:
            await self._execute(execution)
        except Exception:
            log.exception("unexpected error running a job", extra={"job_id": str(execution.job.id)})
        finally:
            self._release()

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
        if self._hand_back_all:
            execution.request_stop(outcomes.StopReason.SHUTDOWN)
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
        """Hand the outcome to the completer; returns once it is recorded (or dropped)."""
        done: asyncio.Future[tuple[Event, JobState] | None] = (
            asyncio.get_running_loop().create_future()
        )
        await self._outcomes.put(_Outcome(execution, event, done))
        recorded = await done
        if recorded is None:
            return
        final, state = recorded
        claimed = execution.job
        metrics.FINISHED.labels(claimed.type, _outcome_label(final)).inc()
        if state is JobState.RETRYING:
            metrics.RETRIES.labels(claimed.type).inc()
        elif state is JobState.DEAD:
            metrics.DLQ.labels("dead").inc()
        execution.ctx.logger.info(
            "attempt finished",
            extra={"outcome": _outcome_label(final), "state": state.value},
        )

    async def _complete_loop(self) -> None:
        """Record finished attempts: everything queued meanwhile goes in one transaction."""
        while True:
            group = [await self._outcomes.get()]
            while len(group) < MAX_OUTCOME_GROUP and not self._outcomes.empty():
                group.append(self._outcomes.get_nowait())
            try:
                await self._record_group(group)
            except Exception as exc:  # transient (PG restart, deadlock) or one bad outcome
                if len(group) == 1:
                    await self._record_alone(group[0], exc)
                else:
                    log.warning("recording %d outcomes failed, one by one: %s", len(group), exc)
                    # Concurrently, like the per-job transactions they replace; a group in
                    # trouble holds up later outcomes only while it retries.
                    await asyncio.gather(*(self._record_alone(o, exc) for o in group))
            finally:
                for item in group:  # never leave a handler waiting, whatever happened
                    if not item.done.done():
                        item.done.set_result(None)

    async def _record_alone(self, item: _Outcome, first_error: BaseException) -> None:
        """Retry one outcome on its own, with backoff, after its group failed."""
        for attempt in range(1, RECORD_ATTEMPTS):
            await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            try:
                await self._record_group([item])
                return
            except Exception as exc:
                first_error = exc
        # The lease will expire and the relay re-queues the job: not lost.
        item.execution.ctx.logger.error(
            "could not record the outcome; giving up: %s", first_error, exc_info=first_error
        )

    async def _record_group(self, group: list[_Outcome]) -> None:
        """One transaction: lock the jobs, decide each with the state machine, save all.

        Each outcome is written only if its attempt is still ours (running, same attempt,
        our lease); otherwise it is dropped as lost. Futures resolve after the commit.
        """
        assert self.engine is not None
        now = datetime.now(UTC)
        writes: list[jobstore.Write] = []
        recorded: list[tuple[_Outcome, jobstore.Write | None]] = []
        async with db.transaction(self.engine) as conn:
            jobs = await jobstore.lock_many(conn, {o.execution.job.id for o in group})
            for item in group:
                claimed = item.execution.job
                job = jobs.get(claimed.id)
                if (
                    job is None
                    or job.state is not JobState.RUNNING
                    or job.attempt != claimed.attempt
                    or job.lease_owner != self.worker_id
                ):
                    recorded.append((item, None))
                    continue
                final = outcomes.apply_policy(item.event, job, item.execution.spec)
                write = jobstore.Write(job, final, transition(job, final, now))
                writes.append(write)
                recorded.append((item, write))
            await jobstore.save_many(conn, writes, now)
        for item, saved in recorded:
            if saved is None:
                self._lost(item.execution)
                item.done.set_result(None)
            else:
                item.done.set_result((saved.event, saved.transition.job.state))

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
