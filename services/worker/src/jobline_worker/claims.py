"""Claiming a fetched batch: decide each message with the state machine, write the claims.

Each work message describes the job as it was written; the claim is decided on that and
written in one statement for the batch (the direct way, see :mod:`jobline.pg.jobstore`).
Messages whose job changed since (a due flip, a hand-back), that carry no description (an
older producer), or whose type has no handler here, take the locked way: one transaction
that locks their jobs, decides on the rows, and writes. A message for an attempt that is
not the job's next one is a duplicate or stale: skipped (``StaleEvent``). An unknown type is
claimed and failed at once, so the state machine writes its dead-letter message and the job's
history stays complete. A message that does not decode, or names no job, is dead-lettered
raw (:mod:`jobline_worker.poison`).

A batch that fails (PostgreSQL restarting, say) is retried with backoff, then message by
message, so one bad message delays only its own offset. Offsets are decided only after the
claim is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, cast

from aiokafka.structs import ConsumerRecord

from jobline.core.envelope import InvalidEnvelope, WorkEnvelope
from jobline.core.errors import IllegalTransition
from jobline.core.job import Job
from jobline.core.limits import Limit
from jobline.core.retries import NO_LIMITS
from jobline.core.states import Claim, Transition, transition
from jobline.pg import jobstore, workflowstore
from jobline.pg.db import Database
from jobline_worker import gating, metrics, outcomes
from jobline_worker.consumer import Batch, Incarnation, QueueConsumer
from jobline_worker.errors import UnknownJobType
from jobline_worker.overrides import LimitOverrides
from jobline_worker.poison import Poison
from jobline_worker.registry import JobSpec, Worker

log = logging.getLogger("jobline.worker")

# Wait between claim retries when PostgreSQL fails under us; capped.
RETRY_SECONDS: Final = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(eq=False, slots=True)
class Delivery:
    """One fetched message that decoded to a work envelope, and where it came from."""

    tp: Incarnation
    record: ConsumerRecord
    envelope: WorkEnvelope
    # When the message was taken for claiming: where its run span starts (tracing on).
    received_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claim that committed: the job as it is now, and its handler."""

    delivery: Delivery
    job: Job
    spec: JobSpec
    # A workflow node's parents by ref ({state, result, error}); None for any other job.
    parents: dict[str, Any] | None = None


# What a claim decided for each delivery: Claimed (run it), SKIPPED (duplicate or stale),
# NO_JOB (dead-letter it), or None (undecided: PostgreSQL failed; the next owner gets it).
SKIPPED: Final = "skipped"
NO_JOB: Final = "no_job"
Decision = Claimed | str | None

Start = Callable[[Claimed], None]


class Claimer:
    """Claims the batches of every queue for one worker process."""

    def __init__(
        self,
        db: Database,
        app: Worker,
        worker_id: str,
        lease_seconds: float,
        poison: Poison,
        *,
        draining: Callable[[], bool],
        overrides: LimitOverrides | None = None,
    ) -> None:
        self.db = db
        self.overrides = overrides
        self.app = app
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.poison = poison
        self._draining = draining

    async def claim_batch(
        self, qc: QueueConsumer, batch: Batch, start: Start, release: Callable[[int], None]
    ) -> None:
        """Claim one fetch's messages; start the claimed, decide every offset.

        Holds one slot per message; each started execution keeps its slot until it is done.
        """
        slots = len(batch)
        try:
            deliveries: list[Delivery] = []
            for tp, record in batch:
                try:
                    envelope = WorkEnvelope.decode(record.value)
                except InvalidEnvelope as exc:
                    if await self.poison.dead_letter_safely(record, "undecodable", str(exc)):
                        qc.decide(tp, record.offset)
                    continue
                deliveries.append(Delivery(tp, record, envelope))
            decisions = await self._claim_retrying(qc, deliveries)
            for delivery, decision in zip(deliveries, decisions, strict=True):
                if decision is None:
                    continue  # undecided: left for the partition's next owner
                if decision == NO_JOB:
                    detail = f"no job {delivery.envelope.id} in the database"
                    if not await self.poison.dead_letter_safely(
                        delivery.record, "no_such_job", detail
                    ):
                        continue
                qc.decide(delivery.tp, delivery.record.offset)
                if isinstance(decision, Claimed):
                    slots -= 1
                    start(decision)
        except Exception:
            log.exception("unexpected error claiming messages", extra={"queue": qc.queue})
        finally:
            release(slots)

    async def _claim_retrying(
        self, qc: QueueConsumer, deliveries: list[Delivery]
    ) -> list[Decision]:
        if not deliveries:
            return []
        for delay in (*RETRY_SECONDS, None):
            if self._draining():
                return [None] * len(deliveries)
            try:
                return await self._claim(qc, deliveries)
            except Exception as exc:
                if len(deliveries) > 1:
                    log.warning("batch claim failed, claiming one by one: %s", exc)
                    singles = await asyncio.gather(
                        *(self._claim_retrying(qc, [d]) for d in deliveries)
                    )
                    return [single[0] for single in singles]
                if delay is None:
                    log.exception("claim failed; leaving the message undecided")
                    return [None]
                log.warning("claim failed, retrying in %gs: %s", delay, exc)
                await asyncio.sleep(delay)
        return [None] * len(deliveries)  # pragma: no cover - the loop returns

    async def _claim(self, qc: QueueConsumer, deliveries: list[Delivery]) -> list[Decision]:
        """A decision per delivery, in order: the direct way first, the locked way for the rest."""
        now = datetime.now(UTC)
        decisions: list[Decision] = [SKIPPED] * len(deliveries)
        direct: list[tuple[int, Job, Claim, Transition, JobSpec]] = []
        locked: list[int] = []
        gated: list[tuple[int, JobSpec]] = []
        seen: set[object] = set()
        for index, delivery in enumerate(deliveries):
            envelope = delivery.envelope
            if envelope.id in seen:
                continue  # a second copy in the same fetch: a duplicate
            seen.add(envelope.id)
            spec = self.app.spec(envelope.type)
            if spec is not None and self._limits(spec, envelope.tenant):
                gated.append((index, spec))  # the claim reads the tenant's limits afresh
                continue
            described = Job.queued_from(envelope)
            if spec is None or described is None:
                locked.append(index)
                continue
            claim = Claim(envelope.attempt, self.worker_id, self.lease_seconds)
            direct.append((index, described, claim, transition(described, claim, now), spec))
        if direct:
            async with self.db.connection() as conn:
                claimed = await jobstore.claim(conn, [(j, c, t) for _, j, c, t, _ in direct], now)
            for index, _, _, result, spec in direct:
                if result.job.id in claimed:
                    decisions[index] = Claimed(deliveries[index], result.job, spec)
                else:
                    locked.append(index)
        if locked:
            await self._claim_locked(qc, deliveries, sorted(locked), decisions, now)
        for index, spec in gated:
            envelope = deliveries[index].envelope
            outcome = await gating.claim(
                self.db,
                envelope.id,
                envelope.attempt,
                spec.start_limits,
                worker_id=self.worker_id,
                lease=self.lease_seconds,
            )
            if outcome is None:
                decisions[index] = NO_JOB
            elif isinstance(outcome, Job):
                decisions[index] = Claimed(deliveries[index], outcome, spec)
            elif outcome == gating.HELD:
                decisions[index] = gating.HELD  # decided: the relay releases it later
        await self._load_parents(decisions)
        started = [d for d in decisions if isinstance(d, Claimed)]
        for claimed_job in started:
            job = claimed_job.job
            metrics.STARTED.labels(job.type, job.queue).inc()
            wait = (now - job.run_at).total_seconds()
            metrics.QUEUE_WAIT_SECONDS.labels(job.type).observe(max(wait, 0.0))
        skipped = sum(1 for d in decisions if d == SKIPPED)
        if skipped:
            metrics.DUPLICATES.labels(qc.queue).inc(skipped)
        return decisions

    def _limits(self, spec: JobSpec | None, tenant: str) -> tuple[Limit, ...]:
        """The limits a tenant's job of ``spec`` starts under (none: the direct claim)."""
        if spec is None:
            return ()
        if self.overrides is None:
            return spec.start_limits
        return self.overrides.limits(spec, tenant)

    async def _load_parents(self, decisions: list[Decision]) -> None:
        """Workflow nodes receive their parents' results: one read for the batch's nodes,
        none for a batch without any (the envelope says which job is a node)."""
        nodes = [
            i
            for i, d in enumerate(decisions)
            if isinstance(d, Claimed) and d.job.workflow_id is not None
        ]
        if not nodes:
            return
        async with self.db.connection() as conn:
            parents = await workflowstore.parent_results(
                conn, [cast(Claimed, decisions[i]).job.id for i in nodes]
            )
        for i in nodes:
            claimed = cast(Claimed, decisions[i])
            decisions[i] = replace(claimed, parents=parents[claimed.job.id])

    async def _claim_locked(
        self,
        qc: QueueConsumer,
        deliveries: Sequence[Delivery],
        indexes: list[int],
        decisions: list[Decision],
        now: datetime,
    ) -> None:
        """Lock the jobs, decide on the rows as they are, write; fills ``decisions``."""
        writes: list[jobstore.Write] = []
        started: list[tuple[int, Job, JobSpec]] = []
        unknown: list[Job] = []
        async with self.db.transaction() as conn:
            jobs = await jobstore.lock_many(conn, {deliveries[i].envelope.id for i in indexes})
            for index in indexes:
                envelope = deliveries[index].envelope
                job = jobs.get(envelope.id)
                if job is None:
                    decisions[index] = NO_JOB
                    continue
                claim = Claim(envelope.attempt, self.worker_id, self.lease_seconds)
                try:
                    result = transition(job, claim, now)
                except IllegalTransition:  # duplicate or stale: its offset is decided
                    log.debug("duplicate or stale message skipped", extra={"job_id": str(job.id)})
                    continue
                jobs[job.id] = result.job
                writes.append(jobstore.Write(job, claim, result))
                spec = self.app.spec(job.type)
                if spec is None:
                    unknown.append(result.job)
                else:
                    started.append((index, result.job, spec))
            await jobstore.save_many(conn, writes, now)
            if unknown:
                await self._fail_unknown(conn, unknown, now)
        for index, job, spec in started:
            decisions[index] = Claimed(deliveries[index], job, spec)
        if unknown:
            metrics.DLQ.labels("unknown_type").inc(len(unknown))

    async def _fail_unknown(self, conn: object, running: list[Job], now: datetime) -> None:
        """Claimed and failed at once: the state machine writes the DLQ message and event."""
        writes = []
        for job in running:
            error = UnknownJobType(f"no handler for job type {job.type!r} on queue {job.queue!r}")
            fail = outcomes.fail_for(error, job, self.worker_id, NO_LIMITS)
            writes.append(jobstore.Write(job, fail, transition(job, fail, now)))
        await jobstore.save_many(conn, writes, now)
