"""The job state machine: pure, clock-as-parameter, no I/O.

``transition(job, event, now)`` returns the new job and the outbox messages its storage
must write in the same transaction. Storage applies it with a conditional UPDATE on the
*old* job's ``(state, attempt)``, so a duplicate or stale delivery can neither run a job
twice at once nor move it backwards.

Attempt accounting: ``attempt`` counts attempts started and only ever grows (it guards
claims, so it must be monotonic). ``budget_start`` marks where the current attempt budget
began; redrive and hand-back move it instead of rewinding ``attempt``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, NamedTuple, TypeAlias
from uuid import UUID

from jobline.core import cloudevent as events
from jobline.core.backoff import BackoffPolicy, next_retry_at
from jobline.core.envelope import WorkEnvelope
from jobline.core.errors import IllegalTransition

DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_TIMEOUT_SECONDS: Final = 300.0
LEASE_EXPIRED_ERROR: Final = "LeaseExpired"
EVENTS_TOPIC: Final = "events"
DLQ_TOPIC: Final = "jobs.dlq"


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: Final = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    LEASE_EXPIRED = "lease_expired"
    CANCELLED = "cancelled"
    HANDED_BACK = "handed_back"


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Why one attempt failed."""

    attempt: int
    error_class: str
    message: str
    outcome: AttemptOutcome
    started_at: datetime | None
    finished_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "error_class": self.error_class,
            "message": self.message,
            "outcome": self.outcome.value,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttemptError:
        started = data.get("started_at")
        return cls(
            attempt=int(data["attempt"]),
            error_class=str(data["error_class"]),
            message=str(data["message"]),
            outcome=AttemptOutcome(data.get("outcome", AttemptOutcome.FAILED)),
            started_at=datetime.fromisoformat(started) if started else None,
            finished_at=datetime.fromisoformat(data["finished_at"]),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the state machine sees it; storage maps it to and from a ``jobs`` row."""

    id: UUID
    tenant_id: str
    type: str
    queue: str
    state: JobState
    payload: dict[str, Any]
    created_at: datetime
    run_at: datetime
    attempt: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    budget_start: int = 0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    priority: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    sequence: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    result: Any = None
    errors: tuple[AttemptError, ...] = ()
    traceparent: str | None = None

    @property
    def attempts_used(self) -> int:
        """Attempts counted against the current budget."""
        return self.attempt - self.budget_start

    @property
    def attempts_left(self) -> int:
        return max(self.max_attempts - self.attempts_used, 0)

    @property
    def last_error(self) -> AttemptError | None:
        return self.errors[-1] if self.errors else None

    def envelope(self, attempt: int) -> WorkEnvelope:
        """The work message that starts ``attempt`` of this job."""
        return WorkEnvelope(
            id=self.id,
            tenant=self.tenant_id,
            type=self.type,
            queue=self.queue,
            attempt=attempt,
            payload=self.payload,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            traceparent=self.traceparent,
            metadata=self.metadata,
        )


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """The relay published the job's delayed work message: scheduled | retrying -> queued."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker takes the job: queued -> running, attempt + 1, lease set."""

    worker_id: str
    lease_seconds: float


@dataclass(frozen=True, slots=True)
class Succeed:
    """The handler returned ``result``."""

    result: Any = None


@dataclass(frozen=True, slots=True)
class Fail:
    """The attempt failed. ``retry_after`` overrides the backoff policy (``Retry(after=)``)."""

    error_class: str
    message: str
    retryable: bool = True
    retry_after: float | None = None
    outcome: AttemptOutcome = AttemptOutcome.FAILED


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    """The worker stopped renewing its lease (crashed or hung): a failed attempt."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """A client asked to cancel: immediate unless running, where it is only requested."""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The worker stopped a running handler after a cancel request."""


@dataclass(frozen=True, slots=True)
class Redrive:
    """An operator sends a dead job back with a fresh attempt budget."""


@dataclass(frozen=True, slots=True)
class HandBack:
    """A draining worker returns a running job unfinished; the attempt is not charged."""


Event: TypeAlias = (
    Due | Claim | Succeed | Fail | LeaseExpired | Cancel | Cancelled | Redrive | HandBack
)


# --- what a transition writes -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A row for the outbox: ``topic`` is logical ("jobs.<queue>", "events", "jobs.dlq")."""

    topic: str
    key: str
    value: bytes
    available_at: datetime


class Transition(NamedTuple):
    job: Job
    messages: tuple[OutboxMessage, ...]


def work_topic(queue: str) -> str:
    return f"jobs.{queue}"


# --- the machine ---------------------------------------------------------------------


def submit(job: Job, now: datetime) -> Transition:
    """Accept a new job: ``queued`` if due, else ``scheduled`` until its ``run_at``.

    The work message is written now either way; its ``available_at`` is the delay, so the
    relay holds it back until it is due.
    """
    if job.sequence != 0 or job.attempt != 0:
        raise IllegalTransition("only a new job can be submitted")
    state = JobState.SCHEDULED if job.run_at > now else JobState.QUEUED
    new = replace(job, state=state, created_at=now)
    return _emit(new, now, work=(job.run_at if job.run_at > now else now))


def transition(job: Job, event: Event, now: datetime) -> Transition:
    """Apply ``event`` to ``job`` at ``now``; illegal combinations raise IllegalTransition."""
    match event:
        case Due():
            _require(job, event, JobState.SCHEDULED, JobState.RETRYING)
            return _emit(replace(job, state=JobState.QUEUED), now)
        case Claim(worker_id=worker, lease_seconds=lease):
            _require(job, event, JobState.QUEUED)
            new = replace(
                job,
                state=JobState.RUNNING,
                attempt=job.attempt + 1,
                started_at=now,
                finished_at=None,
                lease_owner=worker,
                lease_expires_at=now + timedelta(seconds=lease),
            )
            return _emit(new, now)
        case Succeed(result=result):
            _require(job, event, JobState.RUNNING)
            return _emit(_finish(job, JobState.SUCCEEDED, now, result=result), now)
        case Fail():
            _require(job, event, JobState.RUNNING)
            return _fail(job, event, now)
        case LeaseExpired():
            _require(job, event, JobState.RUNNING)
            failure = Fail(
                LEASE_EXPIRED_ERROR, "lease expired", outcome=AttemptOutcome.LEASE_EXPIRED
            )
            return _fail(job, failure, now)
        case Cancel():
            if job.state is JobState.RUNNING:
                if job.cancel_requested_at is not None:
                    return Transition(job, ())
                return Transition(replace(job, cancel_requested_at=now), ())
            _require(job, event, JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING)
            return _emit(_finish(job, JobState.CANCELLED, now, cancel_requested_at=now), now)
        case Cancelled():
            _require(job, event, JobState.RUNNING)
            if job.cancel_requested_at is None:
                raise IllegalTransition("a running job can only be cancelled after a request")
            return _emit(_finish(job, JobState.CANCELLED, now), now)
        case Redrive():
            _require(job, event, JobState.DEAD)
            new = replace(
                job,
                state=JobState.QUEUED,
                budget_start=job.attempt,
                run_at=now,
                finished_at=None,
                cancel_requested_at=None,
            )
            return _emit(new, now, work=now)
        case HandBack():
            _require(job, event, JobState.RUNNING)
            new = replace(
                job,
                state=JobState.QUEUED,
                budget_start=job.budget_start + 1,
                run_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            return _emit(new, now, work=now)
    raise IllegalTransition(f"unknown event {event!r}")  # pragma: no cover - exhaustive


def _fail(job: Job, failure: Fail, now: datetime) -> Transition:
    error = AttemptError(
        attempt=job.attempt,
        error_class=failure.error_class,
        message=failure.message,
        outcome=failure.outcome,
        started_at=job.started_at,
        finished_at=now,
    )
    failed = replace(job, errors=(*job.errors, error))
    if job.cancel_requested_at is not None:
        # The client asked to stop: a failure while stopping ends the job, not a retry.
        return _emit(_finish(failed, JobState.CANCELLED, now), now)
    if failure.retryable and failed.attempts_left > 0:
        if failure.retry_after is not None:
            due = now + timedelta(seconds=max(failure.retry_after, 0.0))
        else:
            rng = random.Random(f"{job.id}:{job.attempt}")
            due = next_retry_at(job.backoff, failed.attempts_used, now, rng)
        retrying = replace(
            failed,
            state=JobState.RETRYING,
            run_at=due,
            lease_owner=None,
            lease_expires_at=None,
        )
        return _emit(retrying, now, work=due)
    dead, messages = _emit(_finish(failed, JobState.DEAD, now), now)
    return Transition(dead, (*messages, _dead_letter(dead, now)))


def _finish(job: Job, state: JobState, now: datetime, **changes: Any) -> Job:
    return replace(
        job,
        state=state,
        finished_at=now,
        lease_owner=None,
        lease_expires_at=None,
        **changes,
    )


def _require(job: Job, event: Event, *allowed: JobState) -> None:
    if job.state not in allowed:
        name = type(event).__name__
        raise IllegalTransition(f"{name} is not allowed for a {job.state.value} job")


def _emit(job: Job, now: datetime, *, work: datetime | None = None) -> Transition:
    """Bump the sequence and write the lifecycle event (+ the next work message)."""
    job = replace(job, sequence=job.sequence + 1)
    messages = [
        OutboxMessage(
            topic=EVENTS_TOPIC,
            key=str(job.id),
            value=events.encode(_lifecycle_event(job, now)),
            available_at=now,
        )
    ]
    if work is not None:
        messages.append(
            OutboxMessage(
                topic=work_topic(job.queue),
                key=str(job.id),
                value=job.envelope(job.attempt + 1).encode(),
                available_at=work,
            )
        )
    return Transition(job, tuple(messages))


def _lifecycle_event(job: Job, now: datetime) -> Any:
    # A claim's event is "started"; every other state names itself.
    name = "started" if job.state is JobState.RUNNING else job.state.value
    last = job.last_error if job.state in (JobState.RETRYING, JobState.DEAD) else None
    data: dict[str, Any] = {
        "job_id": str(job.id),
        "tenant": job.tenant_id,
        "type": job.type,
        "queue": job.queue,
        "state": job.state.value,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "sequence": job.sequence,
        "timings": {
            "created_at": _iso(job.created_at),
            "run_at": _iso(job.run_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "queue_wait_seconds": _seconds(job.run_at, job.started_at)
            if job.state is JobState.RUNNING
            else None,
            "run_seconds": _seconds(job.started_at, job.finished_at),
        },
        "error": (
            {"class": last.error_class, "message": last.message, "outcome": last.outcome.value}
            if last
            else None
        ),
    }
    return events.job_event(
        job_id=str(job.id), sequence=job.sequence, state=name, time=now, data=data
    )


def _dead_letter(job: Job, now: datetime) -> OutboxMessage:
    """Self-contained: enough to understand and replay the job without the database."""
    body = {
        "envelope": job.envelope(job.attempt).to_dict(),
        "reason": job.last_error.to_dict() if job.last_error else None,
        "errors": [e.to_dict() for e in job.errors],
        "dead_at": _iso(now),
        "created_at": _iso(job.created_at),
        "attempts": job.attempt,
    }
    return OutboxMessage(
        topic=DLQ_TOPIC,
        key=str(job.id),
        value=json.dumps(body, separators=(",", ":")).encode(),
        available_at=now,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)
