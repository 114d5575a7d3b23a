"""``/v1/schedules``: recurring jobs (cron or interval) of a tenant, fired by the relay.

The gateway only stores schedules and their ``next_fire_at``; the relay's scheduler fires
them. When a schedule fires is decided by the pure :mod:`jobline.schedules` (DST rules,
misfires, pause and resume), so every rule here is a call into it:

* create: ``next_fire_at`` = the first planned time after now (none while created paused:
  nothing was ever planned, so nothing is owed on resume);
* pause keeps the stored ``next_fire_at``; resume stores ``resume_next_fire`` of it, so the
  times missed while paused run only as the misfire policy says;
* an update that changes when it fires (cron, time zone, interval, bounds) plans afresh from
  now, owing nothing under the old timing.

Every statement is scoped by tenant: another tenant's schedule is simply not found (404).
Rows are changed under ``FOR UPDATE``, which also waits for a relay firing the schedule.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Final, NoReturn
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from jobline.api.fields import Timestamp
from jobline.api.jobs import JobOut
from jobline.api.schedules import (
    MAX_PREVIEW,
    FireTime,
    NextFires,
    ScheduledJobOut,
    ScheduledJobPage,
    ScheduleIn,
    ScheduleLinks,
    ScheduleName,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
)
from jobline.core import jobdefaults
from jobline.core.errors import InvalidSchedule
from jobline.core.schedules import (
    ScheduleSpec,
    next_fire,
    next_fires,
    resume_next_fire,
    spec_from_row,
)
from jobline.pg.db import Conn
from jobline.pg.jobstore import job_from_row
from jobline.web.problems import FieldError, ProblemError, responses
from jobline_gateway.catalog import Catalog
from jobline_gateway.deps import CatalogDep, Db, KnownQuery, Reader, ScheduleWriter, SettingsDep
from jobline_gateway.settings import Settings
from jobline_gateway.store import SQL

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], dependencies=[KnownQuery])

# Fields whose change moves the planned times: the schedule is planned afresh from now.
_TIMING: Final = frozenset({"cron", "timezone", "interval_seconds", "start_at", "end_at"})
_UNIQUE_NAME: Final = "uq_schedules_tenant_id_name"

Limit = Annotated[int | None, Query(ge=1, description="Page size; capped by the server's maximum.")]
CursorParam = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]


# --- routes -------------------------------------------------------------------------------


@router.post(
    "",
    operation_id="createSchedule",
    status_code=201,
    response_model=ScheduleOut,
    responses=responses(409),
)
async def create_schedule(
    body: ScheduleIn,
    principal: ScheduleWriter,
    db: Db,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> Any:
    """Create a schedule; it fires from its first planned time after now (unless paused)."""
    await _check_template(catalog, settings, principal.tenant_id, body.job.stored())
    spec = _spec(
        cron=body.cron,
        timezone=body.timezone,
        interval_seconds=body.interval_seconds,
        start_at=body.start_at,
        end_at=body.end_at,
        misfire_policy=body.misfire_policy,
        catch_up_limit=body.catch_up_limit,
        overlap_policy=body.overlap_policy,
    )
    now = datetime.now(UTC)
    values = {
        "tenant_id": principal.tenant_id,
        "name": body.name,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "interval_seconds": spec.interval_seconds,
        "job_template": body.job.stored(),
        "misfire_policy": spec.misfire_policy.value,
        "catch_up_limit": spec.catch_up_limit,
        "overlap_policy": spec.overlap_policy.value,
        "paused": body.paused,
        "start_at": spec.start_at,
        "end_at": spec.end_at,
        "next_fire_at": None if body.paused else next_fire(spec, now),
    }
    try:
        async with db.connection() as conn:
            row = await SQL.fetchrow(conn, "insert_schedule", **values)
    except asyncpg.UniqueViolationError as exc:
        raise _conflict(exc, body.name) from None
    assert row is not None
    out = _out(row)
    return JSONResponse(
        out.model_dump(mode="json"), status_code=201, headers={"Location": out.links.self}
    )


@router.get("", operation_id="listSchedules", response_model=SchedulePage, responses=responses())
async def list_schedules(
    *,
    principal: Reader,
    db: Db,
    settings: SettingsDep,
    name: Annotated[ScheduleName | None, Query(description="Only the schedule so named.")] = None,
    limit: Limit = None,
    cursor: CursorParam = None,
) -> Any:
    """List the tenant's schedules by name, with cursor pagination."""
    after = _decode_cursor(cursor, str) if cursor is not None else None
    size = min(limit or settings.gateway_page_size_default, settings.gateway_page_size_max)
    async with db.connection() as conn:
        rows = await SQL.fetch(
            conn,
            "list_schedules",
            tenant_id=principal.tenant_id,
            name=name,
            after=after,
            limit=size + 1,
        )
    page = rows[:size]
    more = len(rows) > size
    return SchedulePage(
        schedules=[_out(r) for r in page],
        next_cursor=_encode_cursor(page[-1]["name"]) if more and page else None,
    )


@router.get(
    "/{schedule_id}",
    operation_id="getSchedule",
    response_model=ScheduleOut,
    responses=responses(404),
)
async def get_schedule(schedule_id: UUID, principal: Reader, db: Db) -> Any:
    """A schedule: its timing, job template, policies and next planned fire time."""
    async with db.connection() as conn:
        row = await _get(conn, principal.tenant_id, schedule_id)
    return _out(row)


@router.patch(
    "/{schedule_id}",
    operation_id="updateSchedule",
    response_model=ScheduleOut,
    responses=responses(404, 409),
)
async def update_schedule(  # noqa: PLR0917 - FastAPI injects each by name
    schedule_id: UUID,
    body: SchedulePatch,
    principal: ScheduleWriter,
    db: Db,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> Any:
    """Change a schedule; a new timing is planned afresh from now."""
    given = body.model_fields_set
    if "cron" in given and "interval_seconds" in given:
        _invalid(InvalidSchedule("give exactly one of cron or interval_seconds"))
    if "job" in given and body.job is not None:
        await _check_template(catalog, settings, principal.tenant_id, body.job.stored())
    now = datetime.now(UTC)
    try:
        async with db.transaction() as conn:
            row = await _get(conn, principal.tenant_id, schedule_id, lock=True)
            merged = _merge(row, body)
            spec = _spec(
                **{k: merged[k] for k in (*_TIMING, "misfire_policy")},
                catch_up_limit=merged["catch_up_limit"],
                overlap_policy=merged["overlap_policy"],
            )
            values: dict[str, Any] = {
                "name": merged["name"],
                "cron": spec.cron,
                "timezone": spec.timezone,
                "interval_seconds": spec.interval_seconds,
                "job_template": merged["job_template"],
                "misfire_policy": spec.misfire_policy.value,
                "catch_up_limit": spec.catch_up_limit,
                "overlap_policy": spec.overlap_policy.value,
                "start_at": spec.start_at,
                "end_at": spec.end_at,
            }
            pending = row["next_fire_at"]
            if given & _TIMING:
                # Paused: nothing is pending under the new timing; resume plans from then.
                pending = None if row["paused"] else next_fire(spec, now)
            paused = row["paused"] if body.paused is None else body.paused
            if row["paused"] and not paused:
                pending = resume_next_fire(spec, now, pending)
            values["paused"] = paused
            values["next_fire_at"] = pending
            updated = await SQL.fetchrow(conn, "update_schedule", id=row["id"], **values)
    except asyncpg.UniqueViolationError as exc:
        raise _conflict(exc, body.name or "") from None
    return _out(updated)


@router.delete(
    "/{schedule_id}", operation_id="deleteSchedule", status_code=204, responses=responses(404)
)
async def delete_schedule(schedule_id: UUID, principal: ScheduleWriter, db: Db) -> Response:
    """Delete a schedule; the jobs it created stay (no longer linked to it)."""
    async with db.connection() as conn:
        deleted = await SQL.fetchval(
            conn, "delete_schedule", id=schedule_id, tenant_id=principal.tenant_id
        )
    if deleted is None:
        raise _not_found(schedule_id)
    return Response(status_code=204)


@router.post(
    "/{schedule_id}/pause",
    operation_id="pauseSchedule",
    response_model=ScheduleOut,
    responses=responses(404),
)
async def pause_schedule(schedule_id: UUID, principal: ScheduleWriter, db: Db) -> Any:
    """Stop firing (idempotent); the pending fire time is kept for resume."""
    async with db.transaction() as conn:
        row = await _get(conn, principal.tenant_id, schedule_id, lock=True)
        if row["paused"]:
            return _out(row)
        updated = await SQL.fetchrow(
            conn, "set_schedule_paused", id=row["id"], paused=True, next_fire_at=row["next_fire_at"]
        )
    return _out(updated)


@router.post(
    "/{schedule_id}/resume",
    operation_id="resumeSchedule",
    response_model=ScheduleOut,
    responses=responses(404),
)
async def resume_schedule(schedule_id: UUID, principal: ScheduleWriter, db: Db) -> Any:
    """Fire again from now (idempotent): times missed while paused run as the misfire
    policy says (`skip`/`fire_once`: one, `catch_up`: up to `catch_up_limit`)."""
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        row = await _get(conn, principal.tenant_id, schedule_id, lock=True)
        if not row["paused"]:
            return _out(row)
        pending = resume_next_fire(_stored_spec(row), now, row["next_fire_at"])
        updated = await SQL.fetchrow(
            conn, "set_schedule_paused", id=row["id"], paused=False, next_fire_at=pending
        )
    return _out(updated)


@router.get(
    "/{schedule_id}/next",
    operation_id="listScheduleFireTimes",
    response_model=NextFires,
    responses=responses(404),
)
async def next_fire_times(
    schedule_id: UUID,
    principal: Reader,
    db: Db,
    count: Annotated[int, Query(ge=1, le=MAX_PREVIEW, description="How many.")] = 5,
    after: Annotated[
        Timestamp | None, Query(description="Fire times strictly after this (default now).")
    ] = None,
) -> Any:
    """The next planned fire times, in the schedule's time zone and in UTC."""
    async with db.connection() as conn:
        row = await _get(conn, principal.tenant_id, schedule_id)
    spec = _stored_spec(row)
    start = after or datetime.now(UTC)
    zone = spec.zone
    return NextFires(
        schedule_id=row["id"],
        timezone=spec.timezone,
        after=start,
        fires=[FireTime(local=t.astimezone(zone), utc=t) for t in next_fires(spec, start, count)],
    )


@router.get(
    "/{schedule_id}/jobs",
    operation_id="listScheduleJobs",
    response_model=ScheduledJobPage,
    responses=responses(404),
)
async def schedule_jobs(
    *,
    schedule_id: UUID,
    principal: Reader,
    db: Db,
    settings: SettingsDep,
    limit: Limit = None,
    cursor: CursorParam = None,
) -> Any:
    """The jobs this schedule created, newest fire time first, with cursor pagination."""
    before = _decode_cursor(cursor, datetime.fromisoformat) if cursor is not None else None
    if before is not None and before.tzinfo is None:
        raise _bad_cursor()
    size = min(limit or settings.gateway_page_size_default, settings.gateway_page_size_max)
    async with db.connection() as conn:
        await _get(conn, principal.tenant_id, schedule_id)
        rows = await SQL.fetch(
            conn, "schedule_jobs", schedule_id=schedule_id, before=before, limit=size + 1
        )
    page = rows[:size]
    more = len(rows) > size
    return ScheduledJobPage(
        jobs=[
            ScheduledJobOut(
                **JobOut.of(job_from_row(r)).model_dump(),
                schedule_id=schedule_id,
                fire_time=r["fire_time"],
            )
            for r in page
        ],
        next_cursor=_encode_cursor(page[-1]["fire_time"].isoformat()) if more and page else None,
    )


# --- helpers ------------------------------------------------------------------------------


def _spec(**fields: Any) -> ScheduleSpec:
    try:
        return ScheduleSpec(**fields)
    except InvalidSchedule as exc:
        _invalid(exc)


async def _check_template(
    catalog: Catalog, settings: Settings, tenant_id: str, template: dict[str, Any]
) -> None:
    """A 422 naming ``job.backoff`` if the template's partial backoff contradicts the one it
    inherits now (the tenant's type policy, else the defaults), as a submission would be."""
    backoff = template.get("backoff")
    if not backoff or {"base_seconds", "max_seconds"} <= backoff.keys():
        return  # nothing inherited that could contradict it (the schema checked the order)
    policies = await catalog.policies(tenant_id, [template["type"]])
    try:
        jobdefaults.resolve(settings.job_defaults, policies.get(template["type"]), backoff=backoff)
    except ValueError as exc:
        raise ProblemError(
            422,
            f"Invalid job backoff: {exc}.",
            kind="validation",
            title="Invalid request",
            errors=[
                FieldError(
                    field="job.backoff", location="body", pointer="/job/backoff", message=str(exc)
                )
            ],
        ) from None


def _stored_spec(row: Any) -> ScheduleSpec:
    try:
        return spec_from_row(row)
    except InvalidSchedule as exc:  # stored valid, invalid now (e.g. a zone left tzdata)
        raise ProblemError(409, f"The stored schedule is no longer valid: {exc}") from None


def _field_of(message: str) -> str:
    """Which request field an InvalidSchedule message is about."""
    for prefix, name in (
        ("unknown time zone", "timezone"),
        ("interval_seconds", "interval_seconds"),
        ("start_at", "start_at"),
        ("end_at", "end_at"),
        ("catch_up_limit", "catch_up_limit"),
    ):
        if message.startswith(prefix):
            return name
    return "cron"


def _invalid(exc: InvalidSchedule) -> NoReturn:
    message = str(exc)
    field = _field_of(message)
    raise ProblemError(
        422,
        message,
        kind="invalid-schedule",
        title="Invalid schedule",
        errors=[FieldError(field=field, location="body", pointer=f"/{field}", message=message)],
    )


def _merge(row: Any, body: SchedulePatch) -> dict[str, Any]:
    """The schedule's fields after the patch (cron and interval replace each other)."""
    merged: dict[str, Any] = {
        "name": row["name"],
        "cron": row["cron"],
        "timezone": row["timezone"],
        "interval_seconds": int(row["interval_seconds"]) if row["interval_seconds"] else None,
        "job_template": row["job_template"],
        "misfire_policy": row["misfire_policy"],
        "catch_up_limit": row["catch_up_limit"],
        "overlap_policy": row["overlap_policy"],
        "start_at": row["start_at"],
        "end_at": row["end_at"],
    }
    given = body.model_fields_set
    for name in ("name", "timezone", "misfire_policy", "catch_up_limit", "overlap_policy"):
        if name in given and getattr(body, name) is not None:
            merged[name] = getattr(body, name)
    for name in ("start_at", "end_at"):  # null removes the bound
        if name in given:
            merged[name] = getattr(body, name)
    if "cron" in given:
        merged["cron"], merged["interval_seconds"] = body.cron, None
    if "interval_seconds" in given:
        merged["cron"], merged["interval_seconds"] = None, body.interval_seconds
    if "job" in given and body.job is not None:
        merged["job_template"] = body.job.stored()
    return merged


async def _get(conn: Conn, tenant_id: str, schedule_id: UUID, *, lock: bool = False) -> Any:
    name = "lock_schedule" if lock else "get_schedule"
    row = await SQL.fetchrow(conn, name, id=schedule_id, tenant_id=tenant_id)
    if row is None:
        raise _not_found(schedule_id)
    return row


def _out(row: Any) -> ScheduleOut:
    base = f"/v1/schedules/{row['id']}"
    return ScheduleOut(
        id=row["id"],
        name=row["name"],
        cron=row["cron"],
        timezone=row["timezone"],
        interval_seconds=int(row["interval_seconds"]) if row["interval_seconds"] else None,
        job=row["job_template"],
        misfire_policy=row["misfire_policy"],
        catch_up_limit=row["catch_up_limit"],
        overlap_policy=row["overlap_policy"],
        paused=row["paused"],
        start_at=row["start_at"],
        end_at=row["end_at"],
        next_fire_at=row["next_fire_at"],
        last_fired_at=row["last_fired_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        links=ScheduleLinks(
            self=base,
            next=f"{base}/next",
            jobs=f"{base}/jobs",
            pause=f"{base}/pause",
            resume=f"{base}/resume",
        ),
    )


def _conflict(exc: asyncpg.UniqueViolationError, name: str) -> ProblemError:
    if exc.constraint_name == _UNIQUE_NAME:
        return ProblemError(
            409, f"A schedule named {name!r} already exists.", kind="duplicate-name"
        )
    raise exc


def _not_found(schedule_id: UUID) -> ProblemError:
    # Another tenant's schedule answers exactly like one that never existed.
    return ProblemError(404, f"No schedule {schedule_id}.")


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": value}).encode()).decode().rstrip("=")


def _decode_cursor(token: str, parse: Any) -> Any:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)["k"]
        if not isinstance(value, str) or "\x00" in value:
            raise TypeError("not a cursor of ours")
        return parse(value)
    except (binascii.Error, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise _bad_cursor() from None


def _bad_cursor() -> ProblemError:
    return ProblemError(
        422,
        "The cursor is invalid.",
        kind="validation",
        errors=[FieldError(field="cursor", location="query", message="invalid cursor")],
    )
