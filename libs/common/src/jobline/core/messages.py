"""What a transition writes to the outbox: lifecycle CloudEvents, work and dead-letter messages.

Topics are logical (:mod:`jobline.core.topics`): the relay turns them into the deployment's
names, so the prefix never leaks into the domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from jobline.core import cloudevent, jsontext, topics
from jobline.core.job import Job, JobState, iso


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message for the outbox.

    ``due_attempt`` marks a delayed work message (the job waits as ``scheduled`` or
    ``retrying``): the relay moves the job to ``queued`` when it publishes it, if the job is
    still waiting for that attempt.
    """

    topic: str
    key: str
    value: bytes
    available_at: datetime
    due_attempt: int | None = None


def lifecycle(job: Job, now: datetime) -> OutboxMessage:
    """The CloudEvent ``jobline.job.<state>`` of ``job`` as it is after a transition."""
    return OutboxMessage(
        topic=topics.EVENTS,
        key=str(job.id),
        value=_lifecycle_event(job, now),
        available_at=now,
    )


def work(job: Job, available_at: datetime) -> OutboxMessage:
    """The message that starts the job's next attempt once ``available_at`` has come."""
    waiting = job.state in (JobState.SCHEDULED, JobState.RETRYING)
    return OutboxMessage(
        topic=topics.work(job.queue, job.priority),
        key=str(job.id),
        value=job.envelope(job.attempt + 1).encode(),
        available_at=available_at,
        due_attempt=job.attempt + 1 if waiting else None,
    )


# A dead letter carries the last errors only: a job redriven many times collects hundreds,
# and the message must stay within the broker's size limit (each message is capped by the
# worker). The database keeps them all.
DEAD_LETTER_MAX_ERRORS: Final = 20


def dead_letter(job: Job, now: datetime) -> OutboxMessage:
    """Self-contained: enough to understand and replay the job without the database."""
    kept = job.errors[-DEAD_LETTER_MAX_ERRORS:]
    body = {
        "envelope": job.envelope(job.attempt).to_dict(),
        "reason": job.last_error.to_dict() if job.last_error else None,
        "errors": [e.to_dict() for e in kept],
        "errors_omitted": len(job.errors) - len(kept),
        "dead_at": iso(now),
        "created_at": iso(job.created_at),
        "attempts": job.attempt,
    }
    return OutboxMessage(
        topic=topics.DLQ,
        key=str(job.id),
        value=jsontext.dumps(body),
        available_at=now,
    )


def _lifecycle_event(job: Job, now: datetime) -> bytes:
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
            "created_at": iso(job.created_at),
            "run_at": iso(job.run_at),
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
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
    return cloudevent.encode_job_event(
        job_id=str(job.id), sequence=job.sequence, state=name, time=now, data=data
    )


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)
