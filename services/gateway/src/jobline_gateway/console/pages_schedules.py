"""``/ui/schedules``: the tenant's schedules with their next fire in their own time zone;
pause, resume, and create with a live preview of the cron expression's next fire times.

Every change goes through the API's own route functions (validation, quotas, row locks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobline.api.schedules import ScheduleIn
from jobline.core.apikeys import Scope
from jobline.core.errors import InvalidSchedule
from jobline.core.schedules import ScheduleSpec, next_fires
from jobline.web.problems import ProblemError
from jobline_gateway import schedules
from jobline_gateway.console import render
from jobline_gateway.console.access import ChangerDep, Viewer, ViewerDep, form
from jobline_gateway.schedule_rows import schedule_out
from jobline_gateway.store import SQL

router = APIRouter(prefix="/ui/schedules", include_in_schema=False)

PAGE: Final = 200
PREVIEW: Final = 5


def preview(cron: str, timezone: str, now: datetime) -> tuple[list[datetime], str | None]:
    """The next fire times of ``cron`` in ``timezone`` (local times), or why it is invalid."""
    if not cron.strip():
        return [], None  # nothing typed yet: the form says what to type
    try:
        spec = ScheduleSpec(cron=cron.strip(), timezone=timezone.strip() or "UTC")
    except InvalidSchedule as exc:
        return [], str(exc)
    return [t.astimezone(spec.zone) for t in next_fires(spec, now, PREVIEW)], None


async def _page(request: Request, viewer: Viewer, **extra: Any) -> Response:
    async with request.app.state.db.connection() as conn:
        rows = await SQL.fetch(
            conn, "list_schedules", tenant_id=viewer.tenant, name=None, after=None, limit=PAGE
        )
    items = []
    for row in rows:
        out = schedule_out(row)
        spec = ScheduleSpec(
            cron=out.cron, timezone=out.timezone, interval_seconds=out.interval_seconds
        )
        local = out.next_fire_at.astimezone(spec.zone) if out.next_fire_at else None
        items.append({"out": out, "next_local": local})
    context: dict[str, Any] = {"items": items, "form": {}, "errors": []}
    context.update(extra)
    status = 422 if context["errors"] else 200
    response = await render.page(request, viewer, "schedules.html", section="schedules", **context)
    response.status_code = status
    return response


@router.get("", response_class=HTMLResponse)
async def schedules_page(request: Request, viewer: ViewerDep) -> Response:
    """The schedules, by name."""
    return await _page(request, viewer)


@router.get("/preview", response_class=HTMLResponse)
async def cron_preview(request: Request, viewer: ViewerDep) -> Response:
    """The next fire times of the cron expression being typed (htmx, as the user types)."""
    params = request.query_params
    fires, error = preview(
        params.get("cron", "")[:200], params.get("timezone", "UTC")[:64], datetime.now(UTC)
    )
    return render.html("_cron_preview.html", fires=fires, error=error)


@router.post("", response_class=HTMLResponse)
async def create(request: Request, viewer: ChangerDep) -> Response:
    """Create a schedule from the form (the API's validation and quotas)."""
    viewer.require(Scope.SCHEDULES_WRITE)
    fields = await form(request)
    errors: list[str] = []
    try:
        payload = json.loads(fields.get("payload") or "{}")
    except json.JSONDecodeError as exc:
        payload = None
        errors.append(f"payload: not JSON ({exc.msg})")
    body = None
    if not errors:
        try:
            body = ScheduleIn.model_validate(
                {
                    "name": fields.get("name", ""),
                    "cron": fields.get("cron") or None,
                    "timezone": fields.get("timezone") or "UTC",
                    "job": {
                        "type": fields.get("type", ""),
                        "queue": fields.get("queue") or "default",
                        "payload": payload,
                    },
                }
            )
        except ValidationError as exc:
            errors += [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    if body is not None:
        state = request.app.state
        try:
            await schedules.create_schedule(
                body,
                viewer.principal,
                state.db,
                state.catalog,
                state.settings,
                state.admission,
                request,
            )
        except ProblemError as exc:
            errors.append(exc.detail)
    if errors:
        return await _page(request, viewer, form=fields, errors=errors)
    return RedirectResponse("/ui/schedules", status_code=303)


@router.post("/{schedule_id}/{action}", response_class=HTMLResponse)
async def pause_or_resume(
    schedule_id: UUID, action: str, request: Request, viewer: ChangerDep
) -> Response:
    """Pause or resume a schedule."""
    viewer.require(Scope.SCHEDULES_WRITE)
    state = request.app.state
    if action == "pause":
        await schedules.pause_schedule(schedule_id, viewer.principal, state.db)
    elif action == "resume":
        await schedules.resume_schedule(schedule_id, viewer.principal, state.db)
    else:
        raise ProblemError(404, f"No action {action!r}.")
    return RedirectResponse("/ui/schedules", status_code=303)
