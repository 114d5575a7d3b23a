"""The web console under ``/ui``: server-rendered pages (Jinja2), a little htmx, SSE for
what changes live, uPlot for the charts; every asset is served from the package
(``static/vendor``, fetched by ``scripts/vendor_assets.py``), none from a CDN.

Same tenants, keys and scopes as the API: a session names an API key, every page reads
through the API's stores with that key's tenant, and every change goes through the API's own
functions (state machine, quotas, audit)."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from jobline.web.problems import ProblemError
from jobline_gateway.console import (
    pages_auth,
    pages_dlq,
    pages_insights,
    pages_jobs,
    pages_keys,
    pages_overview,
    pages_schedules,
    pages_workflows,
    render,
)
from jobline_gateway.console.access import LoginRequired, load_viewer, secret_of, to_login
from jobline_gateway.settings import Settings

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the console from ``app``."""
    app.state.console_secret = secret_of(settings)
    if settings.production and settings.console_session_secret is None:
        log.warning(
            "JOBLINE_CONSOLE_SESSION_SECRET is not set: console sessions end when this gateway"
            " restarts and do not cross replicas"
        )
    app.state.console_redrives = {}
    app.state.console_tasks = set()
    for module in (
        pages_auth,
        pages_overview,
        pages_jobs,
        pages_workflows,
        pages_dlq,
        pages_schedules,
        pages_insights,
        pages_keys,
    ):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(LoginRequired, to_login)
    api_problem = app.exception_handlers[ProblemError]

    async def on_problem(request: Request, exc: Exception) -> Response:
        # The API answers problem+json; a console page answers a page saying what went wrong.
        if not request.url.path.startswith("/ui") or not isinstance(exc, ProblemError):
            answer = api_problem(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        viewer = await load_viewer(request)
        fragment = bool(request.headers.get("hx-request"))
        if fragment or viewer is None:
            response = render.html("_error.html", exc.status, message=exc.detail)
        else:
            response = await render.page(
                request, viewer, "error.html", section="", message=exc.detail
            )
            response.status_code = exc.status
        response.headers.update(exc.headers)
        return response

    app.add_exception_handler(ProblemError, on_problem)
