"""Every route of the API as a :class:`Call`: built once, sent by the sync or async client.

A call's answer is parsed into the API's own model. Bodies are sent as given: a model is
dumped (only the fields that were set), a mapping goes as is and the gateway validates it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeAlias
from uuid import UUID

from pydantic import BaseModel

from jobline.api.dlq import DlqGroupList
from jobline.api.jobs import AttemptList, BackoffIn, BatchOut, JobOut, JobPage, JobSpec, JobState
from jobline.api.keys import KeyCreated, KeyIn, KeyList, KeyOut, OwnKeyIn, Scope
from jobline.api.problems import Problem
from jobline.api.queues import QueueList, Stats
from jobline.api.schedules import (
    NextFires,
    ScheduledJobPage,
    ScheduleIn,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
)
from jobline.client._transport import Call, model, nothing
from jobline.client.errors import NotFound
from jobline.client.streaming import LAST_EVENT_ID_HEADER

Id: TypeAlias = UUID | str
Body: TypeAlias = BaseModel | Mapping[str, Any]
JobBody: TypeAlias = JobSpec | Mapping[str, Any]

JOBS: Final = "/v1/jobs"
SCHEDULES: Final = "/v1/schedules"
ADMIN_KEYS: Final = "/v1/admin/keys"
OWN_KEYS: Final = "/v1/keys"
EVENTS_STREAM: Final = "/v1/events/stream"
WEBHOOKS: Final = "/v1/webhooks"

_job = model(JobOut)
_schedule = model(ScheduleOut)


def body(value: Body) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    return dict(value)


def is_uuid(value: Id) -> bool:
    if isinstance(value, UUID):
        return True
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def no_schedule(name: Id) -> NotFound:
    message = f"no schedule named {str(name)!r}"
    return NotFound(
        message,
        status=404,
        problem=Problem(status=404, title="Not Found", detail=message),
        method="GET",
        path=SCHEDULES,
    )


def key_body(
    cls: type[KeyIn] | type[OwnKeyIn],
    scopes: Iterable[Scope | str],
    name: str,
    expires_at: datetime | None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """The JSON of a new key (``cls`` names the route's model; the gateway validates)."""
    key: dict[str, Any] = {"name": name, "scopes": [str(s) for s in scopes]}
    if tenant is not None and "tenant" in cls.model_fields:
        key["tenant"] = tenant
    if expires_at is not None:
        key["expires_at"] = expires_at.isoformat()
    return key


def job_fields(
    type: str,
    payload: Mapping[str, Any] | None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    delay_seconds: float | None = None,
    max_attempts: int | None = None,
    backoff: BackoffIn | Mapping[str, Any] | None = None,
    timeout_seconds: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    unique: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a job from keyword arguments (unset ones are left to the gateway)."""
    job: dict[str, Any] = {"type": type, "payload": dict(payload or {})}
    for name, value in (
        ("queue", queue),
        ("priority", priority),
        ("delay_seconds", delay_seconds),
        ("max_attempts", max_attempts),
        ("timeout_seconds", timeout_seconds),
    ):
        if value is not None:
            job[name] = value
    if run_at is not None:
        job["run_at"] = run_at.isoformat()
    if backoff is not None:
        job["backoff"] = body(backoff)
    if metadata is not None:
        job["metadata"] = dict(metadata)
    if unique is not None:
        job["unique"] = dict(unique)
    return job


def unique_fields(
    key: str | None, policy: str = "reject", window_seconds: float | None = None
) -> dict[str, Any] | None:
    """The JSON of a job's ``unique`` field; None without a key (the gateway validates)."""
    if key is None:
        return None
    unique: dict[str, Any] = {"key": key, "policy": str(policy)}
    if window_seconds is not None:
        unique["window_seconds"] = window_seconds
    return unique


# --- jobs ---------------------------------------------------------------------------------


def submit_job(spec: JobBody, key: str) -> Call[JobOut]:
    return Call("POST", JOBS, _job, json=body(spec), idempotency_key=key)


def submit_batch(specs: Sequence[JobBody], key: str) -> Call[BatchOut]:
    jobs = [body(s) for s in specs]
    return Call("POST", f"{JOBS}/batch", model(BatchOut), json={"jobs": jobs}, idempotency_key=key)


def get_job(job_id: Id) -> Call[JobOut]:
    return Call("GET", f"{JOBS}/{job_id}", _job)


def list_jobs(
    *,
    status: JobState | str | None = None,
    type: str | None = None,
    queue: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[JobPage]:
    params = {
        "status": status,
        "type": type,
        "queue": queue,
        "created_after": created_after,
        "created_before": created_before,
        "limit": limit,
        "cursor": cursor,
    }
    return Call("GET", JOBS, model(JobPage), params=params)


def attempts(job_id: Id) -> Call[AttemptList]:
    return Call("GET", f"{JOBS}/{job_id}/attempts", model(AttemptList))


def cancel_job(job_id: Id) -> Call[JobOut]:
    return Call("POST", f"{JOBS}/{job_id}/cancel", _job)


def redrive_job(job_id: Id) -> Call[JobOut]:
    return Call("POST", f"{JOBS}/{job_id}/redrive", _job)


# --- counts (planned: a gateway before them answers 404, named RouteNotServed) --------------


def dlq_groups(*, type: str | None = None, queue: str | None = None) -> Call[DlqGroupList]:
    params = {"type": type, "queue": queue}
    return Call("GET", "/v1/dlq/groups", model(DlqGroupList), params=params, planned=True)


def queues() -> Call[QueueList]:
    return Call("GET", "/v1/queues", model(QueueList), planned=True)


def stats(*, window_seconds: int | None = None) -> Call[Stats]:
    params = {"window_seconds": window_seconds}
    return Call("GET", "/v1/stats", model(Stats), params=params, planned=True)


# --- schedules ----------------------------------------------------------------------------


def create_schedule(schedule: ScheduleIn | Mapping[str, Any]) -> Call[ScheduleOut]:
    # No Idempotency-Key on this route: a retry after a lost answer meets the unique name (409).
    return Call("POST", SCHEDULES, _schedule, json=body(schedule))


def list_schedules(
    *, name: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Call[SchedulePage]:
    params = {"name": name, "limit": limit, "cursor": cursor}
    return Call("GET", SCHEDULES, model(SchedulePage), params=params)


def get_schedule(schedule_id: Id) -> Call[ScheduleOut]:
    return Call("GET", f"{SCHEDULES}/{schedule_id}", _schedule)


def update_schedule(
    schedule_id: Id, changes: SchedulePatch | Mapping[str, Any]
) -> Call[ScheduleOut]:
    # The same patch twice leaves the same schedule: safe to repeat.
    return Call(
        "PATCH", f"{SCHEDULES}/{schedule_id}", _schedule, json=body(changes), idempotent=True
    )


def pause_schedule(schedule_id: Id) -> Call[ScheduleOut]:
    return Call("POST", f"{SCHEDULES}/{schedule_id}/pause", _schedule, idempotent=True)


def resume_schedule(schedule_id: Id) -> Call[ScheduleOut]:
    return Call("POST", f"{SCHEDULES}/{schedule_id}/resume", _schedule, idempotent=True)


def delete_schedule(schedule_id: Id) -> Call[None]:
    return Call("DELETE", f"{SCHEDULES}/{schedule_id}", nothing)


def next_fires(
    schedule_id: Id, *, count: int | None = None, after: datetime | str | None = None
) -> Call[NextFires]:
    params = {"count": count, "after": after}
    return Call("GET", f"{SCHEDULES}/{schedule_id}/next", model(NextFires), params=params)


def schedule_jobs(
    schedule_id: Id, *, limit: int | None = None, cursor: str | None = None
) -> Call[ScheduledJobPage]:
    params = {"limit": limit, "cursor": cursor}
    return Call("GET", f"{SCHEDULES}/{schedule_id}/jobs", model(ScheduledJobPage), params=params)


# --- API keys -----------------------------------------------------------------------------


def create_key(key: KeyIn | Mapping[str, Any]) -> Call[KeyCreated]:
    return Call("POST", ADMIN_KEYS, model(KeyCreated), json=body(key))


def list_keys(*, tenant: str | None = None) -> Call[KeyList]:
    return Call("GET", ADMIN_KEYS, model(KeyList), params={"tenant": tenant})


def revoke_key(key_id: Id) -> Call[KeyOut]:
    return Call("DELETE", f"{ADMIN_KEYS}/{key_id}", model(KeyOut))


def create_own_key(key: OwnKeyIn | Mapping[str, Any]) -> Call[KeyCreated]:
    return Call("POST", OWN_KEYS, model(KeyCreated), json=body(key), planned=True)


def list_own_keys() -> Call[KeyList]:
    return Call("GET", OWN_KEYS, model(KeyList), planned=True)


def revoke_own_key(key_id: Id) -> Call[KeyOut]:
    return Call("DELETE", f"{OWN_KEYS}/{key_id}", model(KeyOut), planned=True)


# --- lifecycle events ---------------------------------------------------------------------


def stream_events(params: Mapping[str, Any], last_event_id: str | None) -> Call[None]:
    """``GET /v1/events/stream`` (the clients read the answer as a stream, not with parse)."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers[LAST_EVENT_ID_HEADER] = last_event_id
    return Call("GET", EVENTS_STREAM, nothing, params=params, headers=headers, planned=True)
