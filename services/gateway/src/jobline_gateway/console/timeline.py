"""A job's lifecycle as the console draws it, from its row and its attempts (pure).

The lifecycle events themselves go to the broker and are not kept in PostgreSQL; every one of
them is a change that the job's timings and attempt rows record, so the timeline is rebuilt
from those: submitted, each attempt's start and end (worker, outcome, error), a cancel
request, and the final state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobline.core.job import Job, JobState


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    kind: str  # submitted | scheduled | started | succeeded | failed | ... | dead | cancelled
    text: str
    worker: str | None = None
    error: Mapping[str, Any] | None = None


def lifecycle(job: Job, attempts: Sequence[Mapping[str, Any]]) -> list[Step]:
    """The job's steps, oldest first."""
    steps = [Step(job.created_at, "submitted", f"submitted to queue {job.queue}")]
    if job.run_at - job.created_at > timedelta(seconds=1) and job.attempt == 0:
        steps.append(
            Step(job.created_at, "scheduled", f"scheduled to run at {job.run_at:%H:%M:%S}")
        )
    for row in attempts:
        number = row["attempt"]
        if row["started_at"] is not None:
            steps.append(
                Step(row["started_at"], "started", f"attempt {number} started", row["worker_id"])
            )
        if row["finished_at"] is not None:
            outcome = row["outcome"] or "ended"
            error = row["error"]
            text = f"attempt {number} {outcome}"
            if error:
                text += f": {error.get('error_class', 'error')}"
            steps.append(Step(row["finished_at"], outcome, text, row["worker_id"], error))
    if job.cancel_requested_at is not None:
        steps.append(Step(job.cancel_requested_at, "cancel-requested", "cancel requested"))
    if job.state.terminal and job.finished_at is not None:
        steps.append(Step(job.finished_at, job.state.value, f"job {job.state.value}"))
    elif job.state in (JobState.RETRYING, JobState.SCHEDULED) and job.attempt > 0:
        steps.append(
            Step(job.run_at, job.state.value, f"next attempt due at {job.run_at:%H:%M:%S}")
        )
    return sorted(steps, key=lambda s: s.at)
