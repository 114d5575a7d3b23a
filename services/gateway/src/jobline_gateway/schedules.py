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

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from jobline.api.fields import Timestamp
from jobline.api.jobs import JobOut
from jobline.api.schedules import (
    MAX_PREVIEW,
    FireTime,
    JobTemplate,
    NextFires,
    ScheduledJobOut,
    ScheduledJobPage,
    ScheduleIn,
    ScheduleName,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
)
from jobline.core import quotas
from jobline.core.errors import InvalidSchedule
from jobline.core.quotas import QuotaExceeded
from jobline.core.schedules import next_fire, next_fires, resume_next_fire
from jobline.pg import limits
from jobline.pg.jobrows import job_from_row
from jobline.web.problems import quota_problem, responses
from jobline_gateway import registry_admission
from jobline_gateway.cursors import decode_key, encode_key, invalid_cursor
from jobline_gateway.deps import (
    AdmissionDep,
    CatalogDep,
    Db,
    KnownQuery,
    Reader,
    ScheduleWriter,
    SettingsDep,
)
from jobline_gateway.schedule_rows import (
    build_spec,
    check_template,
    fetch_schedule,
    invalid_schedule,
    merge_patch,
    name_conflict,
    not_found,
    schedule_out,
    stored_spec,
)
from jobline_gateway.store import SQL

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], dependencies=[KnownQuery])

# Fields whose change moves the planned times: the schedule is planned afresh from now.
_TIMING: Final = frozenset({"cron", "timezone", "interval_seconds", "start_at", "end_at"})

Limit = Annotated[int | None, Query(ge=1, description="Page size; capped by the server's maximum.")]
CursorParam = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]


async def _admit(request: Request, tenant_id: str, job: JobTemplate) -> None:
    """The job each fire creates must pass the registry now, as a submission would: its type
    registered, its queue declared (a template's queue is always explicit: ``default``
    unless named), its payload valid."""
    await registry_admission.admit(
        request.app.state.registry,
        tenant_id,
        [registry_admission.Candidate(job.type, job.queue, job.payload, "/job")],
        accept_undeclared=request.app.state.settings.gateway_accept_undeclared,
    )


@router.post(
    "",
    operation_id="createSchedule",
    status_code=201,
    response_model=ScheduleOut,
    responses=responses(409),
)
async def create_schedule(  # noqa: PLR0917 - FastAPI injects each by name
    body: ScheduleIn,
    principal: ScheduleWriter,
    db: Db,
    catalog: CatalogDep,
    settings: SettingsDep,
    admission: AdmissionDep,
    request: Request,
) -> Any:
    """Create a schedule; it fires from its first planned time after now (unless paused)."""
    await check_template(catalog, settings, principal.tenant_id, body.job.stored())
    await _admit(request, principal.tenant_id, body.job)
    spec = build_spec(
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
    limit = await admission.quotas(principal.tenant_id)
    try:
        quotas.check_schedule_interval(spec, now, limit)
    except QuotaExceeded as exc:
        raise quota_problem(exc) from None
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
        async with db.transaction() as conn:
            # Counted under the tenant row's lock: two gateways cannot both take the last slot.
            existing = await limits.lock_and_count_schedules(conn, principal.tenant_id)
            quotas.check_schedule_count(existing, limit)
            row = await SQL.fetchrow(conn, "insert_schedule", **values)
    except asyncpg.UniqueViolationError as exc:
        raise name_conflict(exc, body.name) from None
    except QuotaExceeded as exc:
        raise quota_problem(exc) from None
    assert row is not None
    out = schedule_out(row)
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
    after = decode_key(cursor, str) if cursor is not None else None
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
        schedules=[schedule_out(r) for r in page],
        next_cursor=encode_key(page[-1]["name"]) if more and page else None,
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
        row = await fetch_schedule(conn, principal.tenant_id, schedule_id)
    return schedule_out(row)


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
    admission: AdmissionDep,
    request: Request,
) -> Any:
    """Change a schedule; a new timing is planned afresh from now."""
    given = body.model_fields_set
    if "cron" in given and "interval_seconds" in given:
        invalid_schedule(InvalidSchedule("give exactly one of cron or interval_seconds"))
    if "job" in given and body.job is not None:
        await check_template(catalog, settings, principal.tenant_id, body.job.stored())
        await _admit(request, principal.tenant_id, body.job)
    now = datetime.now(UTC)
    limit = await admission.quotas(principal.tenant_id)
    try:
        async with db.transaction() as conn:
            row = await fetch_schedule(conn, principal.tenant_id, schedule_id, lock=True)
            merged = merge_patch(row, body)
            spec = build_spec(
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
                quotas.check_schedule_interval(spec, now, limit)
                # Paused: nothing is pending under the new timing; resume plans from then.
                pending = None if row["paused"] else next_fire(spec, now)
            paused = row["paused"] if body.paused is None else body.paused
            if row["paused"] and not paused:
                pending = resume_next_fire(spec, now, pending)
            values["paused"] = paused
            values["next_fire_at"] = pending
            updated = await SQL.fetchrow(conn, "update_schedule", id=row["id"], **values)
    except asyncpg.UniqueViolationError as exc:
        raise name_conflict(exc, body.name or "") from None
    except QuotaExceeded as exc:
        raise quota_problem(exc) from None
    return schedule_out(updated)


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
        raise not_found(schedule_id)
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
        row = await fetch_schedule(conn, principal.tenant_id, schedule_id, lock=True)
        if row["paused"]:
            return schedule_out(row)
        updated = await SQL.fetchrow(
            conn, "set_schedule_paused", id=row["id"], paused=True, next_fire_at=row["next_fire_at"]
        )
    return schedule_out(updated)


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
        row = await fetch_schedule(conn, principal.tenant_id, schedule_id, lock=True)
        if not row["paused"]:
            return schedule_out(row)
        pending = resume_next_fire(stored_spec(row), now, row["next_fire_at"])
        updated = await SQL.fetchrow(
            conn, "set_schedule_paused", id=row["id"], paused=False, next_fire_at=pending
        )
    return schedule_out(updated)


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
        row = await fetch_schedule(conn, principal.tenant_id, schedule_id)
    spec = stored_spec(row)
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
    before = decode_key(cursor, datetime.fromisoformat) if cursor is not None else None
    if before is not None and before.tzinfo is None:
        raise invalid_cursor()
    size = min(limit or settings.gateway_page_size_default, settings.gateway_page_size_max)
    async with db.connection() as conn:
        await fetch_schedule(conn, principal.tenant_id, schedule_id)
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
        next_cursor=encode_key(page[-1]["fire_time"].isoformat()) if more and page else None,
    )
