"""Templates: one Jinja2 environment (autoescaped) and the headers every console page carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import jinja2
from fastapi import Request
from starlette.responses import HTMLResponse

from jobline_gateway.console import queries
from jobline_gateway.console.access import Viewer
from jobline_gateway.console.session import CSRF_FIELD

# Scripts only from the console's own static files (no inline script, no CDN): an injected
# string in a payload cannot run. htmx adds its indicator styles inline, hence style-src.
HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def when(value: datetime | None) -> str:
    """A timestamp as the console shows it: UTC to the second."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if abs(seconds) >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def brief(value: Any, size: int = 80) -> str:
    """A value as one line of compact JSON, cut to ``size`` characters."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= size else text[: size - 1] + "…"


ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("jobline_gateway.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(when=when, ago=ago, pretty=pretty, seconds=seconds, brief=brief)
ENV.globals.update(csrf_field=CSRF_FIELD)


def html(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a template (a page or a fragment for htmx)."""
    return HTMLResponse(ENV.get_template(name).render(**context), status, headers=HEADERS)


async def page(
    request: Request, viewer: Viewer, name: str, *, section: str, **context: Any
) -> HTMLResponse:
    """A whole page: the layout's navigation, tenant switcher and forms' CSRF token."""
    tenants = [viewer.tenant]
    if viewer.operator:
        async with request.app.state.db.connection() as conn:
            tenants = await queries.tenants(conn)
    return html(
        name,
        viewer=viewer,
        section=section,
        csrf=viewer.csrf,
        tenants=tenants,
        path=request.url.path,
        **context,
    )
