"""Lifecycle events as ``GET /v1/events/stream`` sends them: each ``data:`` line is one
structured-mode CloudEvent (the same JSON as on ``<prefix>.events``)."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE_PATTERN: Final = (
    r"^((jobline\.job\.)?(scheduled|queued|started|retrying|succeeded|dead|cancelled))"
    r"(,(jobline\.job\.)?(scheduled|queued|started|retrying|succeeded|dead|cancelled)){0,6}$"
)
STREAM_ID_PATTERN: Final = r"^p[0-9]{1,4}-[0-9]{1,19}(\.p[0-9]{1,4}-[0-9]{1,19}){0,1023}$"
STREAM_ID_DESCRIPTION: Final = (
    "Where the stream resumes: the `id:` of the last event (or position frame) received, "
    "passed back unchanged. Opaque to clients; it lists, for every partition of the events "
    "topic, the offset of the next record to read (`p<partition>-<offset>` joined by `.`, "
    "e.g. `p0-123.p1-45`), so a resumed stream repeats and misses nothing. Events the "
    "broker no longer retains are gone: the stream resumes at the oldest one it has."
)


class EventTimings(BaseModel):
    """When the job was created, due, started and finished (ISO 8601, UTC)."""

    model_config = ConfigDict(extra="allow")

    created_at: str | None = None
    run_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    queue_wait_seconds: float | None = None
    run_seconds: float | None = None


class EventError(BaseModel):
    """The error that made the job retry or die."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    error_class: str | None = Field(default=None, alias="class")
    message: str | None = None
    outcome: str | None = None


class LifecycleData(BaseModel):
    """The ``data`` of a lifecycle event."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    tenant: str
    type: str = Field(description="The job's type.")
    queue: str | None = None
    state: str
    attempt: int
    max_attempts: int | None = None
    sequence: int = Field(description="Per job, one more with each transition.")
    timings: EventTimings | None = None
    error: EventError | None = None


class LifecycleEvent(BaseModel):
    """A CloudEvent 1.0 ``jobline.job.<state>``; its id (``<job id>:<sequence>``) is the same
    if the platform publishes the transition twice: deduplicate on it."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str
    type: str
    source: str
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    data: LifecycleData


def example() -> dict[str, Any]:
    """A ``jobline.job.succeeded`` event, for the docs."""
    return {
        "specversion": "1.0",
        "id": "0190d9a4-8c1e-7b51-9f4e-2a6c3e1d5b70:3",
        "type": "jobline.job.succeeded",
        "source": "/jobline/jobs",
        "subject": "0190d9a4-8c1e-7b51-9f4e-2a6c3e1d5b70",
        "time": "2026-01-05T10:00:01.250000+00:00",
        "datacontenttype": "application/json",
        "data": {
            "job_id": "0190d9a4-8c1e-7b51-9f4e-2a6c3e1d5b70",
            "tenant": "acme",
            "type": "email.send",
            "queue": "default",
            "state": "succeeded",
            "attempt": 1,
            "max_attempts": 5,
            "sequence": 3,
            "timings": {
                "created_at": "2026-01-05T10:00:00+00:00",
                "run_at": "2026-01-05T10:00:00+00:00",
                "started_at": "2026-01-05T10:00:00.900000+00:00",
                "finished_at": "2026-01-05T10:00:01.250000+00:00",
                "queue_wait_seconds": None,
                "run_seconds": 0.35,
            },
            "error": None,
        },
    }
