"""A job as the state machine sees it: its states, its attempts' errors, and the job itself.

Storage maps a ``jobs`` row to and from :class:`Job`; nothing here knows about storage.

Attempt accounting: ``attempt`` counts attempts started and only ever grows (it guards
claims, so it must be monotonic). ``budget_start`` marks where the current attempt budget
began; redrive and hand-back move it instead of rewinding ``attempt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from jobline.core.backoff import BackoffPolicy
from jobline.core.envelope import WorkEnvelope
from jobline.core.jobdefaults import PLATFORM_DEFAULTS


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
UNFINISHED_STATES: Final = frozenset(JobState) - TERMINAL_STATES


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
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
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
    max_attempts: int = PLATFORM_DEFAULTS.max_attempts
    budget_start: int = 0
    backoff: BackoffPolicy = PLATFORM_DEFAULTS.backoff
    timeout_seconds: float = PLATFORM_DEFAULTS.timeout_seconds
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
    # At most one unfinished job per (tenant, unique_key): see jobline.core.unique.
    unique_key: str | None = None
    # The workflow this job is a node of (jobline.core.workflows). A workflow node that is
    # ``scheduled`` waits for its parents: it has no work message until they end.
    workflow_id: UUID | None = None
    # The concurrency or rate gate (jobline.core.limits) a job waits for: set while it is
    # held (``scheduled`` without a work message) and after its release until it starts.
    waiting_on: str | None = None

    @property
    def waiting_for_parents(self) -> bool:
        """A workflow node stored but not yet runnable (no work message written)."""
        return (
            self.workflow_id is not None
            and self.state is JobState.SCHEDULED
            and self.waiting_on is None
        )

    @property
    def held(self) -> bool:
        """Waiting for a limit's gate to free: ``scheduled`` without a work message."""
        return self.waiting_on is not None and self.state is JobState.SCHEDULED

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
        """The work message that starts ``attempt`` of this job.

        It carries the job as it is when the message is written (``sequence`` included), so a
        worker can decide its claim from the message alone; storage guards that decision on
        ``sequence`` and falls back to reading the row when the job changed meanwhile.
        """
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
            sequence=self.sequence,
            budget_start=self.budget_start,
            priority=self.priority,
            backoff=self.backoff.to_dict(),
            created_at=iso(self.created_at),
            run_at=iso(self.run_at),
            workflow=str(self.workflow_id) if self.workflow_id is not None else None,
        )

    @classmethod
    def queued_from(cls, envelope: WorkEnvelope) -> Job | None:
        """The queued job ``envelope`` was written for, or None if it does not carry one.

        Only what a claim reads is restored; the previous attempts' errors are not (a claim
        does not read them, and the outcome of an attempt that fails reads the row).
        """
        if envelope.sequence is None or envelope.created_at is None or envelope.run_at is None:
            return None
        return cls(
            id=envelope.id,
            tenant_id=envelope.tenant,
            type=envelope.type,
            queue=envelope.queue,
            state=JobState.QUEUED,
            payload=envelope.payload,
            created_at=datetime.fromisoformat(envelope.created_at),
            run_at=datetime.fromisoformat(envelope.run_at),
            attempt=envelope.attempt - 1,
            max_attempts=envelope.max_attempts,
            budget_start=envelope.budget_start,
            backoff=BackoffPolicy.from_dict(envelope.backoff)
            if envelope.backoff
            else PLATFORM_DEFAULTS.backoff,
            timeout_seconds=envelope.timeout_seconds,
            priority=envelope.priority,
            metadata=envelope.metadata,
            sequence=envelope.sequence,
            traceparent=envelope.traceparent,
            workflow_id=UUID(envelope.workflow) if envelope.workflow else None,
        )


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
