"""``/v1/schedules``: recurring jobs (cron or interval) of a tenant, fired by the relay.

Shapes only: whether a cron expression, time zone or bounds make a schedule is decided by
the pure schedule rules in the router, so its message names the problem. The one rule the
schema can state, exactly one of `cron` or `interval_seconds`, it states (``oneOf``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import ConfigDict, Field, Strict, field_validator
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from jobline.api.cron import cron_pattern, time_zone_names
from jobline.api.fields import (
    CURSOR_DESCRIPTION,
    TYPE_PATTERN,
    Answer,
    JobType,
    JsonNumber,
    JsonObject,
    QueueName,
    Request,
    Text,
    Timestamp,
)
from jobline.api.jobs import BackoffIn, BackoffKind, JobOut

MAX_PREVIEW: Final = 100
MAX_INTERVAL_SECONDS: Final = 366 * 86400
MAX_CATCH_UP_LIMIT: Final = 1000


class MisfirePolicy(StrEnum):
    """What to fire for planned times that were missed."""

    SKIP = "skip"
    FIRE_ONCE = "fire_once"
    CATCH_UP = "catch_up"


class OverlapPolicy(StrEnum):
    """Whether a new fire may start while the schedule's previous job is unfinished."""

    ALLOW = "allow"
    SKIP_IF_RUNNING = "skip_if_running"


ScheduleName = Annotated[
    str,
    Field(
        pattern=TYPE_PATTERN,
        description="Unique per tenant: 1-200 of A-Z a-z 0-9 and `_ . : / -`, "
        "e.g. `nightly-report`.",
    ),
]


def _cron_schema(schema: JsonDict) -> None:
    schema["pattern"] = cron_pattern()  # built when the schema is, not at import


def _zone_schema(schema: JsonDict) -> None:
    schema["enum"] = list(time_zone_names())


Cron = Annotated[
    Text,
    Field(
        min_length=1,
        max_length=200,
        description="5 fields (minute hour day-of-month month day-of-week), or 6 with a leading "
        "seconds field, or a macro such as `@daily`. The pattern states the grammar; a "
        "day of month that none of the chosen months has (`0 0 30 2 *`) is refused too.",
        json_schema_extra=_cron_schema,
    ),
]
TimeZone = Annotated[
    Text,
    Field(
        min_length=1,
        max_length=64,
        description="IANA time zone, e.g. `Europe/Berlin`.",
        json_schema_extra=_zone_schema,
    ),
]
IntervalSeconds = Annotated[
    int,
    Field(ge=1, le=MAX_INTERVAL_SECONDS, description="Fire every this many seconds."),
    JsonNumber,
]
CatchUpLimit = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_CATCH_UP_LIMIT,
        description="catch_up: at most this many missed times fire (the most recent).",
    ),
    JsonNumber,
]

# Exactly one of cron / interval_seconds is present and not null.
_ONE_TIMING: Final[JsonDict] = {
    "oneOf": [
        {"required": ["cron"], "properties": {"cron": {"type": "string"}}},
        {"required": ["interval_seconds"], "properties": {"interval_seconds": {"type": "integer"}}},
    ]
}
# A patch names at most one of them (even as null): each replaces the other.
_AT_MOST_ONE_TIMING: Final[JsonDict] = {"not": {"required": ["cron", "interval_seconds"]}}


class JobTemplate(Request):
    """The job each fire creates; unset fields take the tenant's type policy, then defaults."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"type": "report.build", "payload": {"kind": "daily"}, "queue": "reports"}]
        }
    )

    type: JobType
    payload: JsonObject = Field(description="The handler's input: any JSON object.")
    queue: QueueName = "default"
    max_attempts: Annotated[int, Field(ge=1, le=1000), JsonNumber] | None = None
    backoff: BackoffIn | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86400), JsonNumber] | None = None

    def stored(self) -> dict[str, Any]:
        """The template as kept in ``schedules.job_template`` (what the relay fires): the
        set fields; a missing backoff multiplier means the platform's default."""
        return self.model_dump(mode="json", exclude_none=True)


_SCHEDULE_EXAMPLE: Final[JsonDict] = {
    "name": "nightly-report",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "job": {"type": "report.build", "payload": {"kind": "daily"}},
    "misfire_policy": "fire_once",
}


class ScheduleIn(Request):
    """A new schedule: exactly one of `cron` (with `timezone`) or `interval_seconds`."""

    model_config = ConfigDict(
        json_schema_extra={
            **_ONE_TIMING,
            "examples": [
                _SCHEDULE_EXAMPLE,
                {
                    "name": "heartbeat",
                    "interval_seconds": 60,
                    "job": {"type": "ping", "payload": {}},
                },
            ],
        }
    )

    name: ScheduleName
    cron: Cron | None = None
    timezone: TimeZone = "UTC"
    interval_seconds: IntervalSeconds | None = None
    job: JobTemplate
    misfire_policy: MisfirePolicy = Field(
        default=MisfirePolicy.SKIP,
        description="Missed fire times: `skip` fires only the latest, `fire_once` one run for "
        "all, `catch_up` each (up to `catch_up_limit`).",
    )
    catch_up_limit: CatchUpLimit = 100
    overlap_policy: OverlapPolicy = Field(
        default=OverlapPolicy.ALLOW,
        description="`skip_if_running`: no new fire while a job of this schedule is unfinished.",
    )
    start_at: Timestamp | None = Field(default=None, description="No fire before (inclusive).")
    end_at: Timestamp | None = Field(default=None, description="No fire after (inclusive).")
    paused: Annotated[bool, Strict()] = False


def _no_default(schema: JsonDict) -> None:
    schema.pop("default", None)  # absent means "unchanged"; null itself is refused


class SchedulePatch(Request):
    """Fields to change; absent fields keep their value. A new `cron` or `interval_seconds`
    replaces the other (give at most one); `start_at`/`end_at` null removes the bound; `job`
    replaces the template."""

    model_config = ConfigDict(
        json_schema_extra={
            **_AT_MOST_ONE_TIMING,
            "examples": [{"cron": "30 4 * * *", "paused": False}],
        }
    )

    name: ScheduleName | None = None
    # Not null: each replaces the other, so a null would leave no timing at all.
    cron: Cron | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)
    timezone: TimeZone | None = None
    interval_seconds: IntervalSeconds | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_no_default
    )
    job: JobTemplate | None = None
    misfire_policy: MisfirePolicy | None = None
    catch_up_limit: CatchUpLimit | None = None
    overlap_policy: OverlapPolicy | None = None
    start_at: Timestamp | None = None
    end_at: Timestamp | None = None
    paused: Annotated[bool, Strict()] | None = None

    @field_validator("cron", "interval_seconds", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("not_null", "give a value, or leave the field out")
        return value


# --- responses ---------------------------------------------------------------------------


class BackoffTemplateOut(Answer):
    """The template's backoff as given: a null field is taken, at each fire, from the tenant's
    policy for the job type, else the platform defaults."""

    kind: BackoffKind | None = None
    base_seconds: float | None = None
    max_seconds: float | None = None


class JobTemplateOut(Answer):
    """The job each fire creates; null fields are inherited at each fire."""

    type: str
    payload: dict[str, Any]
    queue: str
    max_attempts: int | None = None
    backoff: BackoffTemplateOut | None = None
    timeout_seconds: float | None = None


class ScheduleLinks(Answer):
    self: str
    next: str
    jobs: str
    pause: str
    resume: str


class ScheduleOut(Answer):
    """A schedule as the API shows it."""

    id: UUID
    name: str
    cron: str | None
    timezone: str
    interval_seconds: int | None
    job: JobTemplateOut
    misfire_policy: MisfirePolicy
    catch_up_limit: int
    overlap_policy: OverlapPolicy
    paused: bool
    start_at: datetime | None
    end_at: datetime | None
    next_fire_at: datetime | None = Field(
        description="The next planned time not yet fired (UTC); while paused, the time that "
        "was pending when it was paused (resume applies the misfire policy to it); null once "
        "the schedule has ended."
    )
    last_fired_at: datetime | None = Field(description="Planned time of the latest job fired.")
    created_at: datetime
    updated_at: datetime
    links: ScheduleLinks


class SchedulePage(Answer):
    """One page of schedules, by name."""

    schedules: list[ScheduleOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page. "
        + CURSOR_DESCRIPTION
    )


class FireTime(Answer):
    local: datetime = Field(description="In the schedule's time zone, with its UTC offset.")
    utc: datetime


class NextFires(Answer):
    """The next planned fire times after `after` (default now)."""

    schedule_id: UUID
    timezone: str
    after: datetime
    fires: list[FireTime]


class ScheduledJobOut(JobOut):
    """A job a schedule created, with the planned time it fired for."""

    schedule_id: UUID
    fire_time: datetime


class ScheduledJobPage(Answer):
    """One page of a schedule's jobs, newest fire time first."""

    jobs: list[ScheduledJobOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page. "
        + CURSOR_DESCRIPTION
    )
