"""``/ui/dlq``: dead jobs grouped by type, queue and error class; a group's redrive (dry run,
rate limit, live progress) and purge.

A group's redrive runs in this gateway process as a task that redrives one job at a time
through the API's own path (:func:`jobline_gateway.jobs.apply_event`: guarded, audited), at
most ``rate`` per second; its progress is streamed to the page. A gateway that stops
mid-way leaves the rest dead: redrive the group again.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from jobline.core.apikeys import Scope
from jobline.core.states import Redrive
from jobline.pg import audit
from jobline.web.problems import ProblemError
from jobline_gateway import jobs
from jobline_gateway.console import live, queries, render
from jobline_gateway.console.access import ChangerDep, Viewer, ViewerDep, form
from jobline_gateway.counts import MAX_GROUPS
from jobline_gateway.deps import actor
from jobline_gateway.store import SQL

router = APIRouter(prefix="/ui/dlq", include_in_schema=False)

MAX_REDRIVE: Final = 10_000  # jobs one redrive of a group sends back
MAX_RATE: Final = 1000.0
PURGE_BATCH: Final = 500
TICK: Final = 0.3


@dataclass
class GroupRedrive:
    """One running (or finished) redrive of a group, as its progress shows it."""

    id: str
    tenant: str
    label: str
    total: int
    rate: float
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    finished: bool = False


def _redrives(request: Request) -> dict[str, GroupRedrive]:
    found: dict[str, GroupRedrive] = request.app.state.console_redrives
    return found


def _group(fields: dict[str, str]) -> tuple[str, str, str | None]:
    job_type, queue = fields.get("type", ""), fields.get("queue", "")
    if not job_type or not queue:
        raise ProblemError(422, "A DLQ group needs its type and queue.")
    error_class = fields.get("error_class") if fields.get("has_class") == "1" else None
    return job_type, queue, error_class


def _label(job_type: str, queue: str, error_class: str | None) -> str:
    return f"{job_type} on {queue}: {error_class or 'no error class'}"


@router.get("", response_class=HTMLResponse)
async def dlq_page(request: Request, viewer: ViewerDep) -> Response:
    """The groups, largest first, each with its sample error and its actions."""
    async with request.app.state.db.connection() as conn:
        groups = await SQL.fetch(
            conn, "dlq_groups", tenant_id=viewer.tenant, type=None, queue=None, limit=MAX_GROUPS
        )
    running = [r for r in _redrives(request).values() if r.tenant == viewer.tenant]
    return await render.page(
        request, viewer, "dlq.html", section="dlq", groups=groups, redrives=running
    )


@router.post("/dry-run", response_class=HTMLResponse)
async def dry_run(request: Request, viewer: ChangerDep) -> Response:
    """How many jobs a redrive of the group would send back (nothing changes)."""
    job_type, queue, error_class = _group(await form(request))
    async with request.app.state.db.connection() as conn:
        count = await queries.group_count(conn, viewer.tenant, job_type, queue, error_class)
    return render.html(
        "_dlq_result.html",
        text=f"Dry run: {min(count, MAX_REDRIVE)} job(s) would be redriven"
        + (f" (of {count}; at most {MAX_REDRIVE} per redrive)" if count > MAX_REDRIVE else "")
        + ".",
    )


@router.post("/redrive", response_class=HTMLResponse)
async def redrive_group(request: Request, viewer: ChangerDep) -> Response:
    """Start redriving the group at the given rate; answers its live progress."""
    viewer.require(Scope.JOBS_WRITE)
    fields = await form(request)
    job_type, queue, error_class = _group(fields)
    try:
        rate = min(MAX_RATE, max(0.1, float(fields.get("rate") or 50)))
    except ValueError:
        raise ProblemError(422, "The rate must be a number of jobs per second.") from None
    state = request.app.state
    async with state.db.connection() as conn:
        ids = await queries.group_ids(
            conn, viewer.tenant, job_type, queue, error_class, limit=MAX_REDRIVE
        )
    run = GroupRedrive(
        secrets.token_urlsafe(8),
        viewer.tenant,
        _label(job_type, queue, error_class),
        len(ids),
        rate,
    )
    _redrives(request)[run.id] = run
    who = actor(request, viewer.principal)
    task = asyncio.create_task(_run(request, run, ids, who, viewer))
    state.console_tasks.add(task)
    task.add_done_callback(state.console_tasks.discard)
    return render.html("_redrive.html", run=run)


async def _run(
    request: Request, run: GroupRedrive, ids: list[UUID], who: audit.Actor, viewer: Viewer
) -> None:
    state = request.app.state
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        for n, job_id in enumerate(ids):
            # The rate limit: job n starts no earlier than n / rate seconds after the first.
            await asyncio.sleep(max(0.0, started + n / run.rate - loop.time()))
            try:
                await jobs.apply_event(
                    state.db, viewer.principal, who, job_id, Redrive(), settings=state.settings
                )
                run.done += 1
            except ProblemError as exc:  # redriven meanwhile, purged, unique key held
                run.failed += 1
                if len(run.errors) < 5:
                    run.errors.append(exc.detail)
    finally:
        run.finished = True
        # Kept a while for the page to show the outcome, then forgotten.
        loop.call_later(timedelta(minutes=10).total_seconds(), _redrives(request).pop, run.id, None)


@router.get("/redrives/{run_id}/live")
async def redrive_live(run_id: str, request: Request, viewer: ViewerDep) -> Response:
    """A redrive's progress as SSE frames of HTML; ``done`` when it has finished."""
    run = _redrives(request).get(run_id)
    if run is None or run.tenant != viewer.tenant:
        raise ProblemError(404, f"No redrive {run_id}.")

    async def read() -> tuple[str, str | None]:
        html = render.ENV.get_template("_redrive_progress.html").render(run=run)
        return html, "finished" if run.finished else None

    # No time limit: a slow redrive's progress is shown until it has finished.
    return live.stream(read, tick=TICK, max_seconds=float("inf"))


@router.post("/purge", response_class=HTMLResponse)
async def purge_group(request: Request, viewer: ChangerDep) -> Response:
    """Delete every dead job of the group (with their attempts), audited."""
    viewer.require(Scope.JOBS_WRITE)
    job_type, queue, error_class = _group(await form(request))
    db = request.app.state.db
    purged = 0
    while True:
        async with db.transaction() as conn:
            batch = await queries.purge_group(
                conn, viewer.tenant, job_type, queue, error_class, limit=PURGE_BATCH
            )
            if batch:
                await audit.record(
                    conn,
                    actor(request, viewer.principal),
                    "dlq.purge",
                    f"{viewer.tenant}/{job_type}/{queue}",
                    {"error_class": error_class, "jobs": batch},
                )
        purged += batch
        if batch < PURGE_BATCH:
            break
    return render.html("_dlq_result.html", text=f"Purged {purged} dead job(s).")
