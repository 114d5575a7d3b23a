"""Recording finished attempts: group commit, each outcome decided by the state machine.

Outcomes queue up while a group is being written; the next group takes all of them (no added
wait when idle, bigger groups under load). Successes go the direct way (one statement for
the group, decided on the job as this worker claimed it); everything else, and a success
whose job changed since the claim, goes the locked way (lock, decide on the rows as they
are, guarded write) in one transaction. An outcome the state machine calls stale (the job
was rescued or handed on) is dropped as lost. A group that fails is retried outcome by
outcome with backoff; an outcome never recorded is not lost: its lease expires and the relay
re-queues the job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from jobline.core.errors import IllegalTransition
from jobline.core.job import JobState
from jobline.core.states import Event, Succeed, Transition, transition
from jobline.pg import jobstore
from jobline.pg.db import Conn, Database
from jobline_worker import children, metrics, outcomes
from jobline_worker.execution import Execution
from jobline_worker.outcomes import Outcome

log = logging.getLogger("jobline.worker")

# The most outcomes one transaction records (bounds its lock set and statement size).
MAX_GROUP: Final = 256
RECORD_ATTEMPTS: Final = 5


@dataclass(eq=False, slots=True)
class Finished:
    execution: Execution
    event: Event | None  # None: the job is no longer ours, nothing to record
    recorded: bool = False


class Completer:
    """Records outcomes; ``done(execution)`` runs once each is recorded or dropped."""

    def __init__(
        self,
        db: Database,
        worker_id: str,
        *,
        result_max_bytes: int,
        error_max_bytes: int,
        retention: timedelta,
        done: Callable[[Execution], None],
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.result_max_bytes = result_max_bytes
        self.error_max_bytes = error_max_bytes
        self.retention = retention
        self._done = done
        self._queue: asyncio.Queue[Finished] = asyncio.Queue()
        self._busy = 0

    @property
    def pending(self) -> int:
        """Outcomes reported and not yet recorded."""
        return self._queue.qsize() + self._busy

    def report(self, execution: Execution, outcome: Outcome) -> None:
        """The executor's callback: queue ``outcome`` for the next group."""
        metrics.RUN_SECONDS.labels(execution.job.type).observe(time.monotonic() - execution.started)
        event = outcomes.to_event(
            outcome,
            execution.job,
            self.worker_id,
            limits=execution.spec.limits,
            result_max_bytes=self.result_max_bytes,
            error_max_bytes=self.error_max_bytes,
        )
        self._queue.put_nowait(Finished(execution, event))

    async def run(self) -> None:
        while True:
            group = [await self._queue.get()]
            while len(group) < MAX_GROUP and not self._queue.empty():
                group.append(self._queue.get_nowait())
            self._busy = len(group)
            try:
                await self._record_with_retries(group)
            finally:
                self._busy = 0
                for item in group:
                    self._done(item.execution)

    async def _record_with_retries(self, group: list[Finished]) -> None:
        try:
            await self._record(group)
            return
        except Exception as exc:  # transient (PG restart, deadlock) or one bad outcome
            if len(group) > 1:
                log.warning("recording %d outcomes failed, one by one: %s", len(group), exc)
            first_error: BaseException = exc
        # Concurrently, like separate transactions; a group in trouble holds up later
        # outcomes only while it retries.
        left = [item for item in group if not item.recorded]
        await asyncio.gather(*(self._record_alone(item, first_error) for item in left))

    async def _record_alone(self, item: Finished, first_error: BaseException) -> None:
        for attempt in range(1, RECORD_ATTEMPTS):
            await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            try:
                await self._record([item])
                return
            except Exception as exc:
                first_error = exc
        item.execution.ctx.logger.error(
            "could not record the outcome; giving up: %s", first_error, exc_info=first_error
        )

    async def _record(self, group: list[Finished]) -> None:
        now = datetime.now(UTC)
        direct: list[tuple[Finished, Succeed, Transition]] = []
        locked: list[Finished] = []
        for item in group:
            if item.event is None:
                _observe(item, None)
            elif isinstance(item.event, Succeed):
                job = item.execution.job
                direct.append((item, item.event, transition(job, item.event, now)))
            else:
                locked.append(item)
        # A workflow node's success also resolves its dependants, and a handler's children
        # are inserted with its success: those need a transaction; the rest stay one
        # statement on its own.
        plain = [d for d in direct if not _transactional(d[0])]
        if plain:
            async with self.db.connection() as conn:
                written = await self._succeed(conn, plain, now)
            locked += self._observed(plain, written)
        tx = [d for d in direct if _transactional(d[0])]
        if tx:
            async with self.db.transaction() as conn:
                written = await self._succeed(conn, tx, now)
                await children.insert(
                    conn,
                    [
                        (i.execution.job, i.execution.ctx.children)
                        for i, _, _ in tx
                        if i.execution.job.id in written
                    ],
                    now,
                )
            locked += self._observed(tx, written)
        if locked:
            await self._record_locked(locked, now)

    async def _succeed(
        self, conn: Conn, direct: list[tuple[Finished, Succeed, Transition]], now: datetime
    ) -> set[UUID]:
        return await jobstore.succeed(
            conn, [(i.execution.job, e, t) for i, e, t in direct], now, retention=self.retention
        )

    @staticmethod
    def _observed(
        direct: list[tuple[Finished, Succeed, Transition]], written: set[UUID]
    ) -> list[Finished]:
        """Count the written; return the others, for the locked way."""
        left = []
        for item, _, result in direct:
            if item.execution.job.id in written:
                _observe(item, result.job.state)
            else:
                left.append(item)
        return left

    async def _record_locked(self, items: list[Finished], now: datetime) -> None:
        writes: list[tuple[Finished, jobstore.Write | None]] = []
        async with self.db.transaction() as conn:
            jobs = await jobstore.lock_many(conn, {i.execution.job.id for i in items})
            for item in items:
                job = jobs.get(item.execution.job.id)
                assert item.event is not None
                try:
                    if job is None:
                        raise IllegalTransition("the job is gone")
                    write = jobstore.Write(job, item.event, transition(job, item.event, now))
                except IllegalTransition:  # stale: rescued, handed on, or purged
                    writes.append((item, None))
                    continue
                jobs[job.id] = write.after
                writes.append((item, write))
            await jobstore.save_many(
                conn, [w for _, w in writes if w is not None], now, retention=self.retention
            )
            await children.insert(
                conn,
                [
                    (item.execution.job, item.execution.ctx.children)
                    for item, w in writes
                    if w is not None and isinstance(w.event, Succeed)
                ],
                now,
            )
        for item, saved in writes:
            if saved is None:
                metrics.LEASE_LOST.inc()
                item.execution.ctx.logger.warning(
                    "the attempt is no longer ours; its outcome is dropped"
                )
                _observe(item, None)
            else:
                _observe(item, saved.after.state)


def _transactional(item: Finished) -> bool:
    return item.execution.job.workflow_id is not None or bool(item.execution.ctx.children)


def _observe(item: Finished, state: JobState | None) -> None:
    """Count and log one attempt's end (``state`` None: its outcome was dropped)."""
    item.recorded = True
    job = item.execution.job
    label = outcomes.label(item.event if state is not None else None)
    metrics.FINISHED.labels(job.type, label).inc()
    if state is JobState.RETRYING:
        metrics.RETRIES.labels(job.type).inc()
    elif state is JobState.DEAD:
        metrics.DLQ.labels("dead").inc()
    logger = item.execution.ctx.logger
    if state is not None and logger.isEnabledFor(logging.INFO):
        logger.info("attempt finished", extra={"outcome": label, "state": state.value})
