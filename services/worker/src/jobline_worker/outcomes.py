"""How an attempt's end becomes a state-machine event. Pure: no I/O, no clock.

The runtime observes one of four endings (the handler returned, raised, ran out of time, or
was stopped from outside) and :func:`to_event` maps it to ``Succeed``, ``Fail``,
``Cancelled`` or ``HandBack`` -- or to None when the job is no longer ours and the outcome
must be discarded.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeAlias

from jobline.core.backoff import delay_seconds
from jobline.core.states import AttemptOutcome, Cancelled, Event, Fail, HandBack, Job, Succeed
from jobline_worker.errors import (
    NonRetryable,
    ResultNotSerializable,
    ResultTooLarge,
    Retry,
)
from jobline_worker.registry import JobSpec

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


def to_event(outcome: Outcome, result_max_bytes: int) -> Event | None:
    """The event that records ``outcome``; None means discard (the job is not ours)."""
    match outcome:
        case Returned(value=value):
            try:
                return Succeed(check_result(value, result_max_bytes))
            except NonRetryable as exc:
                return fail_for(exc)
        case Raised(error=error):
            return fail_for(error)
        case TimedOut(seconds=seconds):
            return Fail(
                TIMEOUT_ERROR,
                f"the handler ran longer than its timeout of {seconds:g}s",
                outcome=AttemptOutcome.TIMEOUT,
            )
        case Stopped(reason=StopReason.CANCEL_REQUESTED):
            return Cancelled()
        case Stopped(reason=StopReason.SHUTDOWN):
            return HandBack()
        case Stopped(reason=StopReason.LEASE_LOST):
            return None
    raise AssertionError(f"unknown outcome {outcome!r}")  # pragma: no cover - exhaustive


def fail_for(error: BaseException) -> Fail:
    """The failure an exception stands for: NonRetryable -> DLQ, Retry -> at its time."""
    name = type(error).__name__
    message = str(error) or name
    if isinstance(error, NonRetryable):
        return Fail(name, message, retryable=False)
    if isinstance(error, Retry):
        return Fail(name, message, retry_after=error.after)
    return Fail(name, message)


def apply_policy(event: Event, job: Job, spec: JobSpec | None) -> Event:
    """Apply the handler's own limits to a failure of ``job`` (its running attempt).

    ``max_attempts`` caps the job's budget: the attempt that reaches it is the last.
    ``backoff`` replaces the job's policy for the retry delay (seeded like the state machine's,
    so it stays reproducible) unless the handler asked for a time with ``Retry``.
    """
    if spec is None or not isinstance(event, Fail) or not event.retryable:
        return event
    if spec.max_attempts is not None and job.attempts_used >= spec.max_attempts:
        return replace(event, retryable=False)
    if spec.backoff is not None and event.retry_after is None:
        rng = random.Random(f"{job.id}:{job.attempt}")
        return replace(event, retry_after=delay_seconds(spec.backoff, job.attempts_used, rng))
    return event
