"""The job state machine: pure, clock-as-parameter, no I/O.

``transition(job, event, now)`` returns the new job and the outbox messages its storage
must write in the same transaction.

Delivery guards live here, once: an event that belongs to one attempt says which
(:class:`Due` and :class:`Claim` name the attempt their work message starts; an outcome names
the attempt and the lease owner that ran it), and ``transition`` rejects a stale one with
:class:`~jobline.core.errors.StaleEvent`. Storage writes every transition with a conditional
UPDATE on the job's state, attempt and sequence as the transition saw them: the durable twin
of the same rule, so a duplicate or stale delivery can neither run a job twice at once nor
move it backwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeAlias

from jobline.core import messages
from jobline.core.errors import IllegalTransition, StaleEvent
from jobline.core.job import AttemptError, AttemptOutcome, Job, JobState
from jobline.core.messages import OutboxMessage
from jobline.core.retries import NO_LIMITS, HandlerLimits, retry_at

LEASE_EXPIRED_ERROR = "LeaseExpired"
UNDELIVERABLE_ERROR = "Undeliverable"

# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """The relay publishes the delayed work message of ``attempt``: scheduled | retrying ->
    queued, if the job still waits for that attempt."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker takes the job for ``attempt`` (its work message's): queued -> running."""

    attempt: int
    worker_id: str
    lease_seconds: float


@dataclass(frozen=True, slots=True)
class Succeed:
    """The handler of ``attempt``, run by ``worker_id``, returned ``result``."""

    attempt: int
    worker_id: str
    result: Any = None


@dataclass(frozen=True, slots=True)
class Fail:
    """The attempt failed. ``retry_after`` overrides the backoff (``Retry(after=)``);
    ``limits`` are the handler's caps on the job's budget and backoff."""

    attempt: int
    worker_id: str
    error_class: str
    message: str
    retryable: bool = True
    retry_after: float | None = None
    outcome: AttemptOutcome = AttemptOutcome.FAILED
    limits: HandlerLimits = NO_LIMITS


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The worker stopped the running handler after a cancel request."""

    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class HandBack:
    """A draining worker returns the running job unfinished; the attempt is not charged."""

    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    """The lease of ``attempt`` ran out (its worker crashed or hung): a failed attempt."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Undeliverable:
    """The broker refuses the work message of ``attempt`` for good (e.g. larger than its
    message limit): the attempt can never start, so the job goes dead with ``reason``."""

    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """A client asked to cancel: immediate unless running, where it is only requested."""


@dataclass(frozen=True, slots=True)
class Redrive:
    """An operator sends a dead job back with a fresh attempt budget."""


@dataclass(frozen=True, slots=True)
class Release:
    """A workflow node's last parent ended: scheduled (waiting for parents) -> queued, and
    its work message is written now (there was none while it waited)."""


@dataclass(frozen=True, slots=True)
class Revive:
    """A workflow node that its workflow's CANCEL policy cancelled (a parent failed) waits
    again, because that parent was redriven: cancelled -> scheduled (waiting for parents)."""


@dataclass(frozen=True, slots=True)
class Hold:
    """The job's ``gate`` (jobline.core.limits) is full at the claim of ``attempt``: queued ->
    scheduled, waiting on the gate, no work message; the attempt does not start."""

    attempt: int
    gate: str


@dataclass(frozen=True, slots=True)
class Resume:
    """The gate a held job waits on has room: scheduled -> queued with a new work message.
    ``waiting_on`` stays until the job starts, so the gate counts it as on its way."""


Outcome: TypeAlias = Succeed | Fail | Cancelled | HandBack
Gating: TypeAlias = Hold | Resume  # limits (jobline.core.limits)
Lifecycle: TypeAlias = Due | Claim | Outcome | LeaseExpired | Undeliverable | Cancel | Redrive
Event: TypeAlias = Lifecycle | Release | Revive | Gating


class Transition(NamedTuple):
    job: Job
    messages: tuple[OutboxMessage, ...]


def attempt_outcome(event: Event) -> AttemptOutcome | None:
    """How ``event`` ends an attempt (for the attempt record and metrics); None if it does not."""
    match event:
        case Succeed():
            return AttemptOutcome.SUCCEEDED
        case Fail(outcome=outcome):
            return outcome
        case LeaseExpired():
            return AttemptOutcome.LEASE_EXPIRED
        case Cancelled():
            return AttemptOutcome.CANCELLED
        case HandBack():
            return AttemptOutcome.HANDED_BACK
    return None


# --- the machine ---------------------------------------------------------------------


def submit(job: Job, now: datetime) -> Transition:
    """Accept a new job: ``queued`` if due, else ``scheduled`` until its ``run_at``.

    The work message is written now either way; its ``available_at`` is the delay, so the
    relay holds it back until it is due.
    """
    if job.sequence != 0 or job.attempt != 0:
        raise IllegalTransition("only a new job can be submitted")
    delayed = job.run_at > now
    state = JobState.SCHEDULED if delayed else JobState.QUEUED
    return _emit(job, now, work=(job.run_at if delayed else now), state=state, created_at=now)


def submit_waiting(job: Job, now: datetime) -> Transition:
    """Accept a workflow node that has parents: ``scheduled`` with no work message until its
    parents end (:class:`Release`). Only its lifecycle event is written."""
    if job.sequence != 0 or job.attempt != 0:
        raise IllegalTransition("only a new job can be submitted")
    if job.workflow_id is None:
        raise IllegalTransition("only a workflow node waits for parents")
    return _emit(job, now, state=JobState.SCHEDULED, created_at=now)


def transition(job: Job, event: Event, now: datetime) -> Transition:
    """Apply ``event`` to ``job`` at ``now``.

    Raises :class:`IllegalTransition` for an event the job's state does not allow, and its
    subclass :class:`StaleEvent` for one that names another attempt or lease.
    """
    match event:
        case Due(attempt=attempt):
            _require(job, event, JobState.SCHEDULED, JobState.RETRYING)
            if job.waiting_for_parents:
                raise IllegalTransition("a workflow node waiting for its parents is never due")
            _require_next(job, event, attempt)
            return _emit(job, now, state=JobState.QUEUED)
        case Claim(attempt=attempt, worker_id=worker, lease_seconds=lease):
            _require(job, event, JobState.QUEUED)
            _require_next(job, event, attempt)
            return _emit(
                job,
                now,
                state=JobState.RUNNING,
                attempt=attempt,
                started_at=now,
                finished_at=None,
                lease_owner=worker,
                lease_expires_at=now + timedelta(seconds=lease),
            )
        case Succeed(result=result):
            _require_running(job, event)
            return _emit(job, now, **_finished(JobState.SUCCEEDED, now), result=result)
        case Fail():
            _require_running(job, event)
            return _fail(job, event, now)
        case LeaseExpired(attempt=attempt):
            _require(job, event, JobState.RUNNING)
            if job.attempt != attempt:
                raise StaleEvent(
                    f"LeaseExpired names attempt {attempt}, the job runs {job.attempt}"
                )
            if job.lease_expires_at is not None and job.lease_expires_at > now:
                raise StaleEvent("LeaseExpired while the lease still holds (it was renewed)")
            failure = Fail(
                attempt,
                job.lease_owner or "",
                LEASE_EXPIRED_ERROR,
                "lease expired",
                outcome=AttemptOutcome.LEASE_EXPIRED,
            )
            return _fail(job, failure, now)
        case Undeliverable(attempt=attempt, reason=reason):
            _require(job, event, JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING)
            _require_next(job, event, attempt)
            error = AttemptError(
                attempt=attempt,
                error_class=UNDELIVERABLE_ERROR,
                message=reason,
                outcome=AttemptOutcome.FAILED,
                started_at=None,
                finished_at=now,
            )
            changes = _finished(JobState.DEAD, now)
            dead, emitted = _emit(job, now, **changes, errors=(*job.errors, error))
            return Transition(dead, (*emitted, messages.dead_letter(dead, now)))
        case Cancel():
            if job.state is JobState.RUNNING:
                if job.cancel_requested_at is not None:
                    return Transition(job, ())
                return Transition(replace(job, cancel_requested_at=now), ())
            _require(job, event, JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING)
            return _emit(job, now, **_finished(JobState.CANCELLED, now), cancel_requested_at=now)
        case Cancelled():
            _require_running(job, event)
            if job.cancel_requested_at is None:
                raise IllegalTransition("a running job can only be cancelled after a request")
            return _emit(job, now, **_finished(JobState.CANCELLED, now))
        case Redrive():
            _require(job, event, JobState.DEAD)
            return _emit(
                job,
                now,
                work=now,
                state=JobState.QUEUED,
                budget_start=job.attempt,
                run_at=now,
                finished_at=None,
                cancel_requested_at=None,
            )
        case Release():
            _require(job, event, JobState.SCHEDULED)
            if not job.waiting_for_parents:
                raise IllegalTransition("only a workflow node waiting for parents is released")
            return _emit(job, now, work=now, state=JobState.QUEUED, run_at=now)
        case Hold() | Resume():
            return _gate(job, event, now)
        case Revive():
            _require(job, event, JobState.CANCELLED)
            if job.workflow_id is None or job.attempt != 0:
                raise IllegalTransition("only a workflow node that never ran is revived")
            return _emit(
                job, now, state=JobState.SCHEDULED, finished_at=None, cancel_requested_at=None
            )
        case HandBack():
            _require_running(job, event)
            return _emit(
                job,
                now,
                work=now,
                state=JobState.QUEUED,
                budget_start=job.budget_start + 1,
                run_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
    raise IllegalTransition(f"unknown event {event!r}")  # pragma: no cover - exhaustive


def _gate(job: Job, event: Gating, now: datetime) -> Transition:
    """A limit's gate holds the job back (no work message), or lets it go again."""
    if isinstance(event, Hold):
        _require(job, event, JobState.QUEUED)
        _require_next(job, event, event.attempt)
        return _emit(job, now, state=JobState.SCHEDULED, waiting_on=event.gate)
    _require(job, event, JobState.SCHEDULED)
    if not job.held:
        raise IllegalTransition("only a job held by a limit is resumed")
    return _emit(job, now, work=now, state=JobState.QUEUED)


def _fail(job: Job, failure: Fail, now: datetime) -> Transition:
    error = AttemptError(
        attempt=job.attempt,
        error_class=failure.error_class,
        message=failure.message,
        outcome=failure.outcome,
        started_at=job.started_at,
        finished_at=now,
    )
    errors = (*job.errors, error)
    if job.cancel_requested_at is not None:
        # The client asked to stop: a failure while stopping ends the job, not a retry.
        return _emit(job, now, **_finished(JobState.CANCELLED, now), errors=errors)
    due = retry_at(
        job,
        now,
        retryable=failure.retryable,
        retry_after=failure.retry_after,
        limits=failure.limits,
    )
    if due is not None:
        return _emit(
            job,
            now,
            work=due,
            state=JobState.RETRYING,
            run_at=due,
            lease_owner=None,
            lease_expires_at=None,
            errors=errors,
        )
    dead, emitted = _emit(job, now, **_finished(JobState.DEAD, now), errors=errors)
    return Transition(dead, (*emitted, messages.dead_letter(dead, now)))


def _finished(state: JobState, now: datetime) -> dict[str, Any]:
    """The changes that end a job in ``state``."""
    return {"state": state, "finished_at": now, "lease_owner": None, "lease_expires_at": None}


def _require(job: Job, event: Event, *allowed: JobState) -> None:
    if job.state not in allowed:
        name = type(event).__name__
        raise IllegalTransition(f"{name} is not allowed for a {job.state.value} job")


def _require_next(job: Job, event: Due | Claim | Undeliverable | Hold, attempt: int) -> None:
    """A work message starts the attempt after the job's last one, or it is stale."""
    if attempt != job.attempt + 1:
        name = type(event).__name__
        raise StaleEvent(
            f"{name} for attempt {attempt}, but the job's next attempt is {job.attempt + 1}"
        )


def _require_running(job: Job, event: Outcome) -> None:
    """An outcome is the running attempt's, reported by the lease's owner, or it is stale."""
    _require(job, event, JobState.RUNNING)
    if event.attempt != job.attempt or event.worker_id != job.lease_owner:
        name = type(event).__name__
        raise StaleEvent(
            f"{name} of attempt {event.attempt} by {event.worker_id!r}, but attempt "
            f"{job.attempt} is running under {job.lease_owner!r}"
        )


def _emit(job: Job, now: datetime, *, work: datetime | None = None, **changes: Any) -> Transition:
    """Apply ``changes``, bump the sequence (one copy of the job: dataclasses.replace is among
    the worker's top costs per job) and write the lifecycle event (+ the next work message)."""
    job = replace(job, sequence=job.sequence + 1, **changes)
    emitted = [messages.lifecycle(job, now)]
    if work is not None:
        emitted.append(messages.work(job, work))
    return Transition(job, tuple(emitted))
