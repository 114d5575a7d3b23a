"""What the schedule routes do with a schedule besides routing it: build and check its
spec (a 422 naming the field), merge a patch into its row, read its row (a 404 for another
tenant's), show it as :class:`ScheduleOut`, and name a duplicate (a 409).
"""

from __future__ import annotations

from typing import Any, Final, NoReturn
from uuid import UUID

import asyncpg

from jobline.api.schedules import ScheduleLinks, ScheduleOut, SchedulePatch
from jobline.core import jobdefaults
from jobline.core.errors import InvalidSchedule
from jobline.core.schedules import ScheduleSpec, spec_from_row
from jobline.pg.db import Conn
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway.catalog import Catalog
from jobline_gateway.settings import Settings
from jobline_gateway.store import SQL

_UNIQUE_NAME: Final = "uq_schedules_tenant_id_name"


def build_spec(**fields: Any) -> ScheduleSpec:
    try:
        return ScheduleSpec(**fields)
    except InvalidSchedule as exc:
        invalid_schedule(exc)


async def check_template(
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


def stored_spec(row: Any) -> ScheduleSpec:
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


def invalid_schedule(exc: InvalidSchedule) -> NoReturn:
    message = str(exc)
    field = _field_of(message)
    raise ProblemError(
        422,
        message,
        kind="invalid-schedule",
        title="Invalid schedule",
        errors=[FieldError(field=field, location="body", pointer=f"/{field}", message=message)],
    )


def merge_patch(row: Any, body: SchedulePatch) -> dict[str, Any]:
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


async def fetch_schedule(
    conn: Conn, tenant_id: str, schedule_id: UUID, *, lock: bool = False
) -> Any:
    name = "lock_schedule" if lock else "get_schedule"
    row = await SQL.fetchrow(conn, name, id=schedule_id, tenant_id=tenant_id)
    if row is None:
        raise not_found(schedule_id)
    return row


def schedule_out(row: Any) -> ScheduleOut:
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


def name_conflict(exc: asyncpg.UniqueViolationError, name: str) -> ProblemError:
    if exc.constraint_name == _UNIQUE_NAME:
        return ProblemError(
            409, f"A schedule named {name!r} already exists.", kind="duplicate-name"
        )
    raise exc


def not_found(schedule_id: UUID) -> ProblemError:
    # Another tenant's schedule answers exactly like one that never existed.
    return ProblemError(404, f"No schedule {schedule_id}.")
