"""Synthetic job lifecycles through the real state machine: the `events` messages it emits.

Shared by the analyzer's unit and integration tests, so the events they feed the analyzer are
byte for byte what the job path writes to the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from jobline.core import topics
from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.job import Job, JobState
from jobline.core.states import Claim, Due, Fail, Succeed, Transition, submit, transition

DEFAULT_ERROR = ("TimeoutError", "upstream 10.0.0.7:443 timed out after 30 s")


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """One job's run: its id, final job and the encoded lifecycle events in order."""

    job_id: UUID
    job: Job
    events: tuple[bytes, ...]


def run_job(
    tenant: str,
    job_type: str,
    t0: datetime,
    outcomes: str,
    *,
    gap: timedelta = timedelta(seconds=2),
    run: timedelta = timedelta(seconds=1),
    max_attempts: int = 5,
    backoff_seconds: float = 1.0,
    error: tuple[str, str] = DEFAULT_ERROR,
    errors: dict[int, tuple[str, str]] | None = None,
) -> Lifecycle:
    """Submit at ``t0``; each outcome ('s' succeed, 'f' fail) is one attempt.

    Each attempt is claimed ``gap`` after the job became due and runs for ``run``. Stops at
    a terminal state (success, or dead when attempts run out).
    """
    job = Job(
        id=uuid4(),
        tenant_id=tenant,
        type=job_type,
        queue="default",
        state=JobState.QUEUED,
        payload={},
        created_at=t0,
        run_at=t0,
        max_attempts=max_attempts,
        backoff=BackoffPolicy(BackoffKind.FIXED, backoff_seconds, backoff_seconds),
    )
    out: list[bytes] = []

    def take(tr: Transition) -> Job:
        out.extend(m.value for m in tr.messages if m.topic == topics.EVENTS)
        return tr.job

    job = take(submit(job, t0))
    due = t0
    for n, outcome in enumerate(outcomes, start=1):
        started = due + gap
        job = take(transition(job, Claim(job.attempt + 1, "worker-1", 60.0), started))
        finished = started + run
        if outcome == "s":
            job = take(transition(job, Succeed(job.attempt, "worker-1", {"ok": True}), finished))
            break
        cls, message = (errors or {}).get(n, error)
        job = take(transition(job, Fail(job.attempt, "worker-1", cls, message), finished))
        if job.state is JobState.DEAD:
            break
        due = job.run_at
        job = take(transition(job, Due(job.attempt + 1), due))
    return Lifecycle(job.id, job, tuple(out))
