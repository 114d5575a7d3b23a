"""Request and response bodies of the API (pydantic; they are also the OpenAPI schemas).

Requests forbid unknown fields and bound every number, so a typo or an absurd value is a
422 naming the field instead of a job that misbehaves later. Free-form JSON (payload,
metadata) is checked for what PostgreSQL's jsonb would refuse (``\\u0000``, NaN) and for
depth, so nothing valid here can fail at INSERT time.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from jobline.core.apikeys import TENANT_RE, Scope
from jobline.core.backoff import BackoffKind
from jobline.core.job import Job, JobState
from jobline.pg.keystore import KeyRecord

MAX_BATCH: Final = 1000
MAX_JSON_DEPTH: Final = 32
MAX_DELAY_SECONDS: Final = 366 * 86400
# Datetimes outside these years are refused: they are surely mistakes, and the far ends
# would overflow once shifted to UTC.
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 9000

TYPE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$"
QUEUE_PATTERN: Final = r"^[a-z0-9_-]{1,64}$"


def _pointer(path: list[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def check_json(value: Any) -> Any:
    """Reject ``\\u0000`` in any string or key, non-finite numbers and deep nesting."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise PydanticCustomError(
                "json_too_deep", "nested deeper than {max} levels", {"max": MAX_JSON_DEPTH}
            )
        if isinstance(item, str):
            if "\x00" in item:
                raise PydanticCustomError(
                    "nul_character", "contains \\u0000 at {at}", {"at": _pointer(path) or "/"}
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise PydanticCustomError(
                    "non_finite", "non-finite number at {at}", {"at": _pointer(path) or "/"}
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise PydanticCustomError(
                        "nul_character",
                        "key contains \\u0000 at {at}",
                        {"at": _pointer(path) or "/"},
                    )
                stack.append((child, [*path, key]))
        elif isinstance(item, list):
            stack.extend((child, [*path, str(i)]) for i, child in enumerate(item))
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "contains \\u0000")
    return value


def _sane_datetime(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise PydanticCustomError(
            "datetime_range", "must be between {lo} and {hi}", {"lo": MIN_YEAR, "hi": MAX_YEAR}
        )
    return utc


def _not_reserved_queue(value: str) -> str:
    if value == "dlq":
        raise PydanticCustomError("reserved_queue", "queue name 'dlq' is reserved")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
Text = Annotated[str, AfterValidator(_no_nul)]
Timestamp = Annotated[AwareDatetime, AfterValidator(_sane_datetime)]
JobType = Annotated[
    str, Field(pattern=TYPE_PATTERN, description="Handler name, e.g. `email.send`.")
]
QueueName = Annotated[
    str,
    Field(pattern=QUEUE_PATTERN, description="1-64 of a-z, 0-9, `_`, `-`; not `dlq`."),
    AfterValidator(_not_reserved_queue),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackoffIn(_Request):
    """Retry backoff; a missing field takes the value of the policy that applies otherwise
    (the tenant's policy for the job type, else the platform defaults)."""

    kind: BackoffKind | None = None
    base_seconds: Annotated[float, Field(ge=0, le=86400)] | None = None
    max_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] | None = None

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


class JobSpec(_Request):
    """One job to submit."""

    type: JobType
    payload: JsonObject = Field(description="The handler's input: any JSON object.")
    queue: QueueName = "default"
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    run_at: Timestamp | None = Field(default=None, description="Not before this time.")
    delay_seconds: Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS)] | None = Field(
        default=None, description="Not before now + this; exclusive with run_at."
    )
    max_attempts: Annotated[int, Field(ge=1, le=1000)] | None = None
    backoff: BackoffIn | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] | None = None
    metadata: JsonObject = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_delay(self) -> JobSpec:
        if self.run_at is not None and self.delay_seconds is not None:
            raise PydanticCustomError("exclusive_fields", "give run_at or delay_seconds, not both")
        return self


class BatchIn(_Request):
    """Up to 1,000 jobs, accepted or rejected together."""

    jobs: Annotated[list[JobSpec], Field(min_length=1, max_length=MAX_BATCH)]


# --- responses ---------------------------------------------------------------------------


class BackoffOut(BaseModel):
    kind: BackoffKind
    base_seconds: float
    max_seconds: float


class Timings(BaseModel):
    created_at: datetime
    scheduled_for: datetime = Field(description="When the job is (or was) due: its run_at.")
    started_at: datetime | None
    finished_at: datetime | None


class ErrorOut(BaseModel):
    attempt: int
    error_class: str
    message: str
    outcome: str
    started_at: datetime | None
    finished_at: datetime


class JobLinks(BaseModel):
    self: str
    attempts: str
    cancel: str
    redrive: str


class JobOut(BaseModel):
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
    links: JobLinks

    @classmethod
    def of(cls, job: Job) -> JobOut:
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
                outcome=last.outcome.value,
                started_at=last.started_at,
                finished_at=last.finished_at,
            )
            if last
            else None,
            result=job.result,
            links=JobLinks(
                self=base,
                attempts=f"{base}/attempts",
                cancel=f"{base}/cancel",
                redrive=f"{base}/redrive",
            ),
        )


class BatchOut(BaseModel):
    """Per-item results, in the order submitted."""

    jobs: list[JobOut]


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class AttemptOut(BaseModel):
    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: dict[str, Any] | None


class AttemptList(BaseModel):
    attempts: list[AttemptOut]


# --- admin -------------------------------------------------------------------------------


class KeyIn(_Request):
    """A new API key for a tenant (the tenant is created if it does not exist)."""

    tenant: Annotated[str, Field(pattern=TENANT_RE.pattern)]
    name: Annotated[Text, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1)]
    expires_at: Timestamp | None = None


class KeyOut(BaseModel):
    id: UUID
    tenant: str
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, record: KeyRecord) -> KeyOut:
        return cls(
            id=record.id,
            tenant=record.tenant_id,
            name=record.name,
            prefix=record.prefix,
            scopes=sorted(record.scopes),
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The API key. Shown only in this response; store it now.")


class KeyList(BaseModel):
    keys: list[KeyOut]
