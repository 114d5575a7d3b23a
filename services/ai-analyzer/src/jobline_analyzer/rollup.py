"""Lifecycle CloudEvents -> per-minute rollups, error-class counts and attempt history (pure).

What counts where, per tenant, job type and bucket (the event's own time, so a replay puts
every event in the same bucket again):

- ``submitted``: ``queued``/``scheduled`` events with sequence 1 (a new job; later ``queued``
  events are retries becoming due, redrives and hand-backs);
- ``started``: ``started`` events, with their queue wait (run_at -> start) in ``wait_hist``;
- ``succeeded``, ``retried`` (an attempt failed and will be retried), ``dead``, ``cancelled``;
  every attempt that finished (succeeded, retrying, dead) adds its run time to ``run_hist``;
- errors of ``retrying``/``dead`` events by class: exception type + normalised message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from cloudevents.core.base import BaseCloudEvent

from jobline.core import cloudevent as events
from jobline.core.errors import InvalidEvent
from jobline_analyzer import histogram
from jobline_analyzer.fingerprint import error_class, fingerprint

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATES = frozenset({"queued", "scheduled", "started", "succeeded", "retrying", "dead", "cancelled"})
AttemptOutcome = Literal["succeeded", "failed", "cancelled", "handed_back"]


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """The fields of a ``jobline.job.*`` event the analyzer uses."""

    id: str
    job_id: UUID
    tenant: str
    job_type: str
    state: str
    sequence: int
    attempt: int
    max_attempts: int
    time: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_wait_seconds: float | None
    run_seconds: float | None
    error_type: str | None
    error_message: str | None

    @property
    def attempt_seconds(self) -> float | None:
        """Run time of the attempt this event finished.

        A ``retrying`` job has no ``finished_at`` (only terminal states set it), so its
        attempt ran from ``started_at`` to the event's time.
        """
        if self.run_seconds is not None:
            return self.run_seconds
        if self.started_at is None:
            return None
        return max((self.time - self.started_at).total_seconds(), 0.0)

    @property
    def error_class(self) -> str | None:
        """Readable error class (type + normalised message), None without an error."""
        if self.error_type is None:
            return None
        return error_class(self.error_type, self.error_message or "")


def parse(event: BaseCloudEvent) -> LifecycleEvent:
    """The analyzer's view of a decoded lifecycle event; anything else raises InvalidEvent."""
    kind = event.get_type()
    if not kind.startswith(events.JOB_EVENT_PREFIX):
        raise InvalidEvent(f"not a lifecycle event: {kind!r}")
    state = kind[len(events.JOB_EVENT_PREFIX) :]
    if state not in STATES:
        raise InvalidEvent(f"unknown lifecycle state {state!r}")
    data = events.data_of(event)
    time = event.get_time()
    try:
        timings: dict[str, Any] = data.get("timings") or {}
        error: dict[str, Any] = data.get("error") or {}
        if time is None:
            time = _dt(timings.get("finished_at")) or _dt(timings.get("started_at"))
        if time is None:
            raise InvalidEvent("lifecycle event without a time")
        return LifecycleEvent(
            id=event.get_id(),
            job_id=UUID(str(data["job_id"])),
            tenant=str(data["tenant"]),
            job_type=str(data["type"]),
            state=state,
            sequence=int(data["sequence"]),
            attempt=int(data.get("attempt") or 0),
            max_attempts=int(data.get("max_attempts") or 1),
            time=time,
            started_at=_dt(timings.get("started_at")),
            finished_at=_dt(timings.get("finished_at")),
            queue_wait_seconds=_num(timings.get("queue_wait_seconds")),
            run_seconds=_num(timings.get("run_seconds")),
            error_type=str(error["class"]) if error.get("class") is not None else None,
            error_message=str(error.get("message") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"malformed lifecycle event {event.get_id()!r}: {exc}") from None


def _dt(value: object) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _num(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def bucket_of(time: datetime, bucket_seconds: int) -> datetime:
    """Start of the bucket holding ``time``."""
    seconds = int((time - EPOCH).total_seconds() // bucket_seconds) * bucket_seconds
    return EPOCH + timedelta(seconds=seconds)


@dataclass(slots=True)
class RollupDelta:
    """What one batch adds to one (tenant, job type, bucket) rollup."""

    submitted: int = 0
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    run_hist: list[int] = field(default_factory=histogram.empty)
    run_sum: float = 0.0
    wait_hist: list[int] = field(default_factory=histogram.empty)
    wait_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """A job's latest known state (the highest sequence wins)."""

    job_id: UUID
    tenant: str
    job_type: str
    state: str
    sequence: int
    max_attempts: int
    time: datetime


@dataclass(frozen=True, slots=True)
class AttemptUpdate:
    """What an event says about one attempt.

    ``weak`` updates (a cancel or hand-back reported by a non-running job) only fill an
    outcome that is still unknown, so they never overwrite a recorded failure.
    """

    job_id: UUID
    attempt: int
    outcome: AttemptOutcome | None
    error_class: str | None
    started_at: datetime | None
    finished_at: datetime | None
    weak: bool = False


RollupKey = tuple[str, str, datetime]
ErrorKey = tuple[str, str, datetime, str]


@dataclass(slots=True)
class Batch:
    """A batch of new (not yet seen) events, aggregated for one transaction."""

    rollups: dict[RollupKey, RollupDelta] = field(default_factory=dict)
    errors: dict[ErrorKey, tuple[str, int]] = field(default_factory=dict)
    jobs: dict[UUID, JobUpdate] = field(default_factory=dict)
    attempts: list[AttemptUpdate] = field(default_factory=list)


def aggregate(batch_events: Iterable[LifecycleEvent], bucket_seconds: int) -> Batch:
    """Fold events into a batch; the caller has already dropped duplicates."""
    batch = Batch()
    for ev in batch_events:
        key = (ev.tenant, ev.job_type, bucket_of(ev.time, bucket_seconds))
        delta = batch.rollups.get(key)
        if delta is None:
            delta = batch.rollups[key] = RollupDelta()
        _count(delta, ev)
        cls = ev.error_class
        if cls is not None and ev.state in ("retrying", "dead"):
            ekey = (*key, fingerprint(ev.error_type or "", ev.error_message or ""))
            _, n = batch.errors.get(ekey, (cls, 0))
            batch.errors[ekey] = (cls, n + 1)
        known = batch.jobs.get(ev.job_id)
        if known is None or known.sequence < ev.sequence:
            batch.jobs[ev.job_id] = JobUpdate(
                ev.job_id, ev.tenant, ev.job_type, ev.state, ev.sequence, ev.max_attempts, ev.time
            )
        attempt = _attempt_update(ev)
        if attempt is not None:
            batch.attempts.append(attempt)
    return batch


def _count(delta: RollupDelta, ev: LifecycleEvent) -> None:
    if ev.state in ("queued", "scheduled") and ev.sequence == 1:
        delta.submitted += 1
    elif ev.state == "started":
        delta.started += 1
        if ev.queue_wait_seconds is not None:
            histogram.add(delta.wait_hist, ev.queue_wait_seconds)
            delta.wait_sum += ev.queue_wait_seconds
    elif ev.state == "succeeded":
        delta.succeeded += 1
    elif ev.state == "retrying":
        delta.retried += 1
    elif ev.state == "dead":
        delta.dead += 1
    elif ev.state == "cancelled":
        delta.cancelled += 1
    if ev.state in ("succeeded", "retrying", "dead"):
        run = ev.attempt_seconds
        if run is not None:
            histogram.add(delta.run_hist, run)
            delta.run_sum += run


def _attempt_update(ev: LifecycleEvent) -> AttemptUpdate | None:
    if ev.attempt < 1:
        return None  # never started
    if ev.state == "started":
        return AttemptUpdate(ev.job_id, ev.attempt, None, None, ev.started_at, None)
    if ev.state == "succeeded":
        return AttemptUpdate(
            ev.job_id, ev.attempt, "succeeded", None, ev.started_at, ev.finished_at or ev.time
        )
    if ev.state in ("retrying", "dead"):
        # A failed attempt's event time is when it finished (the job's finished_at is only
        # set once it is dead).
        return AttemptUpdate(
            ev.job_id, ev.attempt, "failed", ev.error_class, ev.started_at, ev.time
        )
    if ev.state == "cancelled":
        return AttemptUpdate(ev.job_id, ev.attempt, "cancelled", None, None, ev.time, weak=True)
    if ev.state == "queued" and ev.sequence > 1:
        # Due (after retrying) and redrive find the attempt already failed; only a hand-back
        # leaves it open.
        return AttemptUpdate(ev.job_id, ev.attempt, "handed_back", None, None, ev.time, weak=True)
    return None
