"""A job's events, as the client observes them, and the polling behind ``wait``.

Until the gateway serves a stream of a job's events, the client polls ``GET /v1/jobs/{id}``
and reports what changed between two reads: a change of state, a new attempt, a new
progress report. Changes that begin and end between two reads are not seen (a job that goes
queued -> running -> succeeded within one interval shows queued -> succeeded); the final
state always is. Polls start fast and slow down while nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from jobline.api.jobs import JobOut, JobState, Progress

EventKind = Literal["snapshot", "state", "attempt", "progress"]

DEFAULT_POLL_SECONDS: Final = 0.1
DEFAULT_MAX_POLL_SECONDS: Final = 2.0
_SLOWDOWN: Final = 1.5


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One observed change of a job.

    ``snapshot`` is the first read; ``state`` a new status; ``attempt`` a new attempt in the
    same status (e.g. a retry that started between two reads); ``progress`` a new progress
    report from the running handler.
    """

    kind: EventKind
    job: JobOut
    previous_status: JobState | None = None

    @property
    def status(self) -> JobState:
        return self.job.status

    @property
    def progress(self) -> Progress | None:
        return self.job.progress

    @property
    def terminal(self) -> bool:
        return self.job.status.terminal


def changes(previous: JobOut | None, current: JobOut) -> list[JobEvent]:
    """What changed from ``previous`` to ``current`` (the first read is a snapshot)."""
    if previous is None:
        return [JobEvent("snapshot", current)]
    found = []
    # A progress report comes before the change of state seen in the same read: the handler
    # reported it while running.
    progress = current.progress
    if progress is not None and progress != previous.progress:
        found.append(JobEvent("progress", current, previous.status))
    if current.status != previous.status:
        found.append(JobEvent("state", current, previous.status))
    elif current.attempt != previous.attempt:
        found.append(JobEvent("attempt", current, previous.status))
    return found


def next_interval(current: float, *, changed: bool, first: float, most: float) -> float:
    """Poll again soon after a change; otherwise a little later each time, up to ``most``."""
    if changed:
        return first
    return min(current * _SLOWDOWN, most)
