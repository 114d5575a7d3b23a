"""``/v1/jobs``: the bodies of submit, batch submit, read, list, attempts, cancel and redrive.

The response models are built from the domain's objects by the gateway (``JobOut.of``); they
only read attributes, described here as protocols, so this module imports nothing of the
server side.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Protocol
from uuid import UUID

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from jobline.api.fields import (
    CURSOR_DESCRIPTION,
    Answer,
    JobType,
    JsonNumber,
    JsonObject,
    QueueName,
    Request,
    Timestamp,
)
from jobline.api.unique import UniqueIn

MAX_BATCH: Final = 1000
MAX_DELAY_SECONDS: Final = 366 * 86400


class JobState(StrEnum):
    """Where a job is in its life (see the state diagram in ARCHITECTURE.md)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """No further change happens by itself (a dead job may still be redriven)."""
        return self in TERMINAL_STATES


TERMINAL_STATES: Final = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})


class BackoffKind(StrEnum):
    """How the wait before a retry grows."""

    FIXED = "fixed"
    EXPONENTIAL = "exponential"
    EXPONENTIAL_JITTER = "exponential_jitter"


class BackoffIn(Request):
    """Retry backoff; a missing field takes the value of the policy that applies otherwise
    (the tenant's policy for the job type, else the platform defaults)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"kind": "exponential_jitter", "base_seconds": 1, "max_seconds": 300}]
        }
    )

    kind: BackoffKind | None = None
    base_seconds: Annotated[float, Field(ge=0, le=86400), JsonNumber] | None = None
    max_seconds: (
        Annotated[
            float, Field(ge=0, le=7 * 86400, description="At least `base_seconds`."), JsonNumber
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _ordered(self) -> BackoffIn:
        if (
            self.max_seconds is not None
            and self.base_seconds is not None
            and self.max_seconds < self.base_seconds
        ):
            raise PydanticCustomError("backoff_order", "max_seconds must be >= base_seconds")
        return self

    def given(self) -> dict[str, Any]:
        """The fields the request set."""
        return self.model_dump(exclude_none=True)


_ONE_DELAY_SCHEMA: Final[JsonDict] = {
    # run_at and delay_seconds exclude each other: both present and non-null is invalid.
    "not": {
        "required": ["run_at", "delay_seconds"],
        "properties": {"run_at": {"type": "string"}, "delay_seconds": {"type": "number"}},
    }
}
_JOB_EXAMPLE: Final[JsonDict] = {
    "type": "send-email",
    "payload": {"to": "ada@example.com", "subject": "Welcome"},
    "queue": "emails",
    "max_attempts": 5,
    "delay_seconds": 30,
}


class JobSpec(Request):
    """One job to submit. `run_at` and `delay_seconds` exclude each other."""

    model_config = ConfigDict(
        json_schema_extra={**_ONE_DELAY_SCHEMA, "examples": [_JOB_EXAMPLE]},
    )

    type: JobType
    payload: JsonObject = Field(description="The handler's input: any JSON object.")
    queue: QueueName = Field(
        default="default",
        description="A declared queue. Omitted: the job type's registered queue (`default` "
        "for a type no worker registered).",
    )
    # 0-9, higher starts first: each level is a lane of the queue (jobline.core.topics).
    priority: Annotated[int, Field(ge=0, le=9), JsonNumber] = 0
    run_at: Timestamp | None = Field(
        default=None, description="Not before this time; exclusive with `delay_seconds`."
    )
    delay_seconds: Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS), JsonNumber] | None = Field(
        default=None, description="Not before now + this; exclusive with `run_at`."
    )
    max_attempts: Annotated[int, Field(ge=1, le=1000), JsonNumber] | None = None
    backoff: BackoffIn | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86400), JsonNumber] | None = None
    metadata: JsonObject = Field(default_factory=dict)
    unique: UniqueIn | None = Field(
        default=None, description="At most one unfinished job with this key (see UniqueIn)."
    )

    @model_validator(mode="after")
    def _one_delay(self) -> JobSpec:
        if self.run_at is not None and self.delay_seconds is not None:
            raise PydanticCustomError("exclusive_fields", "give run_at or delay_seconds, not both")
        return self


class BatchIn(Request):
    """Up to 1,000 jobs, accepted or rejected together; no two with one `unique.key`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "jobs": [
                        {"type": "echo", "payload": {"n": 1}},
                        {"type": "echo", "payload": {"n": 2}, "priority": 9},
                    ]
                }
            ]
        }
    )

    jobs: Annotated[list[JobSpec], Field(min_length=1, max_length=MAX_BATCH)]


# --- what the gateway reads to build a response ----------------------------------------


class BackoffView(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def base_seconds(self) -> float: ...
    @property
    def max_seconds(self) -> float: ...


class ErrorView(Protocol):
    @property
    def attempt(self) -> int: ...
    @property
    def error_class(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime: ...


class JobView(Protocol):
    """The attributes of a job that :meth:`JobOut.of` reads."""

    @property
    def id(self) -> UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def attempt(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def attempts_left(self) -> int: ...
    @property
    def backoff(self) -> BackoffView: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def run_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def cancel_requested_at(self) -> datetime | None: ...
    @property
    def last_error(self) -> ErrorView | None: ...
    @property
    def result(self) -> Any: ...
    @property
    def unique_key(self) -> str | None: ...
    @property
    def waiting_on(self) -> str | None: ...


# --- responses ---------------------------------------------------------------------------


class BackoffOut(Answer):
    kind: BackoffKind
    base_seconds: float
    max_seconds: float


class Timings(Answer):
    created_at: datetime
    scheduled_for: datetime = Field(description="When the job is (or was) due: its run_at.")
    started_at: datetime | None
    finished_at: datetime | None


class ErrorOut(Answer):
    attempt: int
    error_class: str
    message: str
    outcome: str
    started_at: datetime | None
    finished_at: datetime


class JobLinks(Answer):
    self: str
    attempts: str
    cancel: str
    redrive: str


class Progress(Answer):
    """What a running handler last reported (``ctx.progress``), kept in ``metadata.progress``."""

    fraction: float
    message: str | None = None
    attempt: int | None = None
    at: datetime | None = None


class JobOut(Answer):
    """A job as the API shows it."""

    id: UUID
    type: str
    queue: str
    status: JobState
    priority: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    attempt: int = Field(description="Attempts started so far.")
    max_attempts: int
    attempts_left: int
    backoff: BackoffOut
    timeout_seconds: float
    timings: Timings
    cancel_requested_at: datetime | None
    last_error: ErrorOut | None
    result: Any = None
    unique_key: str | None = Field(
        default=None, description="The submission's `unique.key`, if it gave one."
    )
    waiting_on: str | None = Field(
        default=None, description="The limit holding the job back (`<kind>:<type>:<scope>`)."
    )
    links: JobLinks

    @property
    def progress(self) -> Progress | None:
        """The handler's last progress report (``metadata.progress``), if any."""
        raw = self.metadata.get("progress")
        if not isinstance(raw, Mapping):
            return None
        try:
            return Progress.model_validate(raw)
        except ValueError:
            return None

    @classmethod
    def of(cls, job: JobView) -> JobOut:
        base = f"/v1/jobs/{job.id}"
        last = job.last_error
        return cls(
            id=job.id,
            type=job.type,
            queue=job.queue,
            status=job.state,
            priority=job.priority,
            payload=job.payload,
            metadata=job.metadata,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            attempts_left=job.attempts_left,
            backoff=BackoffOut(
                kind=job.backoff.kind,
                base_seconds=job.backoff.base_seconds,
                max_seconds=job.backoff.max_seconds,
            ),
            timeout_seconds=job.timeout_seconds,
            timings=Timings(
                created_at=job.created_at,
                scheduled_for=job.run_at,
                started_at=job.started_at,
                finished_at=job.finished_at,
            ),
            cancel_requested_at=job.cancel_requested_at,
            last_error=ErrorOut(
                attempt=last.attempt,
                error_class=last.error_class,
                message=last.message,
                outcome=str(last.outcome),
                started_at=last.started_at,
                finished_at=last.finished_at,
            )
            if last
            else None,
            result=job.result,
            unique_key=job.unique_key,
            waiting_on=job.waiting_on,
            links=JobLinks(
                self=base,
                attempts=f"{base}/attempts",
                cancel=f"{base}/cancel",
                redrive=f"{base}/redrive",
            ),
        )


class BatchOut(Answer):
    """Per-item results, in the order submitted."""

    jobs: list[JobOut]


class JobPage(Answer):
    """One page of jobs, newest first."""

    jobs: list[JobOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page. "
        + CURSOR_DESCRIPTION
    )


class AttemptOut(Answer):
    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: dict[str, Any] | None


class AttemptList(Answer):
    attempts: list[AttemptOut]
