"""``/ui/jobs``: the jobs listing (filters, keyset pages) and a job's page (live over SSE,
cancel and redrive)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobline.api.jobs import JobOut
from jobline.core.apikeys import Scope
from jobline.core.job import Job, JobState
from jobline.pg.db import Conn
from jobline.web.problems import ProblemError
from jobline_gateway import jobs, store
from jobline_gateway.console import live, queries, render, timeline
from jobline_gateway.console.access import ChangerDep, ViewerDep
from jobline_gateway.cursors import Cursor

router = APIRouter(prefix="/ui/jobs", include_in_schema=False)

PAGE_SIZE: Final = 50
SINCE: Final = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_HEX: Final = re.compile(r"^[0-9a-f-]{1,36}$")
# How often a job's live page looks at the job (a primary-key probe), and for how long one
# stream runs before the browser reconnects (EventSource does that by itself).
LIVE_TICK: Final = 0.5


def id_range(text: str) -> tuple[UUID, UUID] | None:
    """The primary-key range of the job ids starting with ``text`` (hex, dashes optional)."""
    digits = text.replace("-", "")
    if not _HEX.match(text) or not 1 <= len(digits) <= 32:
        return None
    low = digits.ljust(32, "0")
    high = digits.ljust(32, "f")
    return UUID(low), UUID(high)


def parse_filters(params: dict[str, str], now: datetime) -> tuple[store.JobFilter, list[str]]:
    """The listing's filter from the form's fields, and what was wrong with them."""
    errors: list[str] = []
    state = params.get("state") or None
    if state is not None and state not in {s.value for s in JobState}:
        errors.append(f"unknown state {state!r}")
        state = None
    found: dict[str, str | None] = {}
    for name in ("type", "queue"):
        value = params.get(name) or None
        if value is not None and not _NAME.match(value):
            errors.append(f"invalid {name} {value!r}")
            value = None
        found[name] = value
    since = params.get("since") or None
    after = now - timedelta(seconds=SINCE[since]) if since in SINCE else None
    if since is not None and since not in SINCE:
        errors.append(f"unknown time range {since!r}")
    where = store.JobFilter(
        status=state, type=found["type"], queue=found["queue"], created_after=after
    )
    return where, errors


async def _text_filter(
    conn: Conn, tenant: str, where: store.JobFilter, text: str
) -> store.JobFilter:
    """Narrow ``where`` by a job id prefix, else by an Idempotency-Key."""
    bounds = id_range(text.lower())
    if bounds is not None:
        return dataclasses.replace(where, id_low=bounds[0], id_high=bounds[1])
    ids = await queries.keyed_jobs(conn, tenant, text)
    return dataclasses.replace(where, ids=ids)


@router.get("", response_class=HTMLResponse)
async def jobs_page(request: Request, viewer: ViewerDep) -> Response:
    """The jobs listing; htmx asks for the table alone when a filter changes."""
    params = dict(request.query_params)
    where, errors = parse_filters(params, datetime.now(UTC))
    after = None
    if cursor := params.get("cursor"):
        try:
            after = Cursor.decode(cursor)
        except ValueError:
            errors.append("invalid cursor")
    text = (params.get("q") or "").strip()[:255]
    async with request.app.state.db.connection() as conn:
        if text:
            where = await _text_filter(conn, viewer.tenant, where, text)
        page, following = await store.list_jobs(conn, viewer.tenant, where, after, PAGE_SIZE)
    kept = {k: v for k, v in params.items() if k != "cursor" and v}
    context: dict[str, Any] = {
        "jobs": page,
        "next_url": "/ui/jobs?" + urlencode({**kept, "cursor": following.encode()})
        if following
        else None,
        "first_url": "/ui/jobs?" + urlencode(kept) if after is not None else None,
        "params": params,
        "errors": errors,
        "states": [s.value for s in JobState],
        "since_choices": list(SINCE),
    }
    if request.headers.get("hx-request") and request.headers.get("hx-target") == "job-table":
        return render.html("_jobs_table.html", **context)
    return await render.page(request, viewer, "jobs.html", section="jobs", **context)


async def _job(request: Request, tenant: str, job_id: UUID) -> Job:
    async with request.app.state.db.connection() as conn:
        job = await store.get_job(conn, tenant, job_id)
    if job is None:
        raise ProblemError(404, f"No job {job_id}.")
    return job


@router.get("/{job_id:uuid}", response_class=HTMLResponse)
async def job_page(job_id: UUID, request: Request, viewer: ViewerDep) -> Response:
    """A job: payload, result, metadata, attempts, lifecycle, live state and the buttons."""
    async with request.app.state.db.connection() as conn:
        job = await store.get_job(conn, viewer.tenant, job_id)
        attempts = await store.attempts(conn, job_id) if job is not None else []
    if job is None:
        raise ProblemError(404, f"No job {job_id}.")
    return await render.page(
        request,
        viewer,
        "job.html",
        section="jobs",
        job=job,
        out=JobOut.of(job),
        attempts=attempts,
        events=timeline.lifecycle(job, attempts),
        notice=request.query_params.get("notice"),
    )


@router.get("/{job_id:uuid}/live")
async def job_live(job_id: UUID, request: Request, viewer: ViewerDep) -> Response:
    """The job's state, attempt and progress as SSE frames of HTML, sent when they change;
    a last frame ``done`` when the job has finished."""
    await _job(request, viewer.tenant, job_id)  # 404 before the stream starts

    async def read() -> tuple[str, str | None] | None:
        async with request.app.state.db.connection() as conn:
            job = await store.get_job(conn, viewer.tenant, job_id)
        if job is None:  # purged meanwhile
            return None
        html = render.ENV.get_template("_job_live.html").render(out=JobOut.of(job))
        return html, job.state.value if job.state.terminal else None

    return live.stream(read, tick=LIVE_TICK)


async def _act(request: Request, viewer: ChangerDep, job_id: UUID, what: str) -> Response:
    viewer.require(Scope.JOBS_WRITE)
    state = request.app.state
    act = jobs.cancel_job if what == "cancel" else jobs.redrive_job
    await act(job_id, viewer.principal, state.db, request, state.settings)
    notice = "cancelled" if what == "cancel" else "redriven"
    return RedirectResponse(f"/ui/jobs/{job_id}?notice={notice}", status_code=303)


@router.post("/{job_id:uuid}/cancel")
async def cancel(job_id: UUID, request: Request, viewer: ChangerDep) -> Response:
    """Cancel the job (the API's cancel, with the session's key)."""
    return await _act(request, viewer, job_id, "cancel")


@router.post("/{job_id:uuid}/redrive")
async def redrive(job_id: UUID, request: Request, viewer: ChangerDep) -> Response:
    """Redrive the dead job (the API's redrive, with the session's key)."""
    return await _act(request, viewer, job_id, "redrive")
