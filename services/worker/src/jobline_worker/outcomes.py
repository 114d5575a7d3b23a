"""How an attempt's end becomes a state-machine event. Pure: no I/O, no clock.

The runtime observes one of four endings (the handler returned, raised, ran out of time, or
was stopped from outside) and :func:`to_event` maps it to ``Succeed``, ``Fail``,
``Cancelled`` or ``HandBack`` -- or to None when the job is no longer ours and the outcome
must be discarded. Whether a failure is retried is not decided here: the handler's limits
travel in the ``Fail`` event to the state machine's one retry rule
(:mod:`jobline.core.retries`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from jobline.core.job import AttemptOutcome, Job
from jobline.core.retries import HandlerLimits
from jobline.core.states import Cancelled, Event, Fail, HandBack, Succeed, attempt_outcome
from jobline.core.textcap import DEFAULT_ERROR_MAX_BYTES, cap_text
from jobline_worker.errors import (
    NonRetryable,
    ResultNotSerializable,
    ResultTooLarge,
    Retry,
)

TIMEOUT_ERROR = "HandlerTimeout"


class StopReason(StrEnum):
    """Why the runtime stopped a handler from outside."""

    CANCEL_REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class Returned:
    """The handler returned ``value``."""

    value: Any


@dataclass(frozen=True, slots=True)
class Raised:
    """The handler raised ``error``."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The handler ran past its timeout of ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Stopped:
    """The runtime stopped the handler for ``reason``."""

    reason: StopReason


Outcome: TypeAlias = Returned | Raised | TimedOut | Stopped


def check_result(value: Any, max_bytes: int) -> Any:
    """``value`` if it is JSON-serialisable within ``max_bytes``, else raise (non-retryable)."""
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ResultNotSerializable(f"the handler's result is not JSON: {exc}") from None
    size = len(encoded.encode())
    if size > max_bytes:
        raise ResultTooLarge(f"the handler's result is {size} bytes; the limit is {max_bytes}")
    return value


def to_event(
    outcome: Outcome,
    job: Job,
    worker_id: str,
    *,
    limits: HandlerLimits,
    result_max_bytes: int,
    error_max_bytes: int = DEFAULT_ERROR_MAX_BYTES,
) -> Event | None:
    """The event that records ``outcome`` of ``job``'s running attempt; None means discard
    (the job is no longer ours)."""
    attempt = job.attempt
    match outcome:
        case Returned(value=value):
            try:
                return Succeed(attempt, worker_id, check_result(value, result_max_bytes))
            except NonRetryable as exc:
                return fail_for(exc, job, worker_id, limits, error_max_bytes=error_max_bytes)
        case Raised(error=error):
            return fail_for(error, job, worker_id, limits, error_max_bytes=error_max_bytes)
        case TimedOut(seconds=seconds):
            return Fail(
                attempt,
                worker_id,
                TIMEOUT_ERROR,
                f"the handler ran longer than its timeout of {seconds:g}s",
                outcome=AttemptOutcome.TIMEOUT,
                limits=limits,
            )
        case Stopped(reason=StopReason.CANCEL_REQUESTED):
            return Cancelled(attempt, worker_id)
        case Stopped(reason=StopReason.SHUTDOWN):
            return HandBack(attempt, worker_id)
        case Stopped(reason=StopReason.LEASE_LOST):
            return None
    raise AssertionError(f"unknown outcome {outcome!r}")  # pragma: no cover - exhaustive


def fail_for(
    error: BaseException,
    job: Job,
    worker_id: str,
    limits: HandlerLimits,
    *,
    error_max_bytes: int = DEFAULT_ERROR_MAX_BYTES,
) -> Fail:
    """The failure an exception stands for: NonRetryable -> DLQ, Retry -> at its time.

    The message is capped at ``error_max_bytes`` (the cut marked): it is stored with the job
    and travels in its events and dead letter.
    """
    name = type(error).__name__
    message = cap_text(str(error) or name, error_max_bytes)
    if isinstance(error, NonRetryable):
        return Fail(job.attempt, worker_id, name, message, retryable=False, limits=limits)
    if isinstance(error, Retry):
        return Fail(job.attempt, worker_id, name, message, retry_after=error.after, limits=limits)
    return Fail(job.attempt, worker_id, name, message, limits=limits)


def label(event: Event | None) -> str:
    """The ``outcome`` label of the finished-attempts metric for a recorded event."""
    if event is None:
        return "lease_lost"
    outcome = attempt_outcome(event)
    return outcome.value if outcome is not None else type(event).__name__.lower()
