"""``/ui/login`` and ``/ui/logout``, and the operator's tenant switcher.

The login form is protected against CSRF too (a forged login would put a victim in the
attacker's session): a random token in a ``SameSite=Strict`` cookie must come back in the
form (double submit). The session cookie is ``HttpOnly``, ``SameSite=Strict``, scoped to
``/ui``, ``Secure`` behind HTTPS or in production, and expires with the session.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobline.core.apikeys import Scope
from jobline.web.problems import ProblemError
from jobline_gateway.console import queries, render
from jobline_gateway.console import session as sessions
from jobline_gateway.console.access import ChangerDep, form, load_viewer
from jobline_gateway.deps import authenticate
from jobline_gateway.settings import Settings

router = APIRouter(prefix="/ui", include_in_schema=False)

LOGIN_CSRF: Final = "jobline_login_csrf"


def safe_next(target: str | None) -> str:
    """Where to go after login: a console path only (never another site)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui"


def _secure(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return request.url.scheme == "https" or settings.production


def set_session(request: Request, response: Response, session: sessions.Session) -> None:
    max_age = int((session.expires_at - datetime.now(UTC)).total_seconds())
    response.set_cookie(
        sessions.COOKIE,
        sessions.encode(session, request.app.state.console_secret),
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _login_form(
    request: Request, target: str | None, error: str | None = None, status: int = 200
) -> Response:
    token = secrets.token_urlsafe(16)
    response = render.html("login.html", status, token=token, error=error, next=safe_next(target))
    response.set_cookie(
        LOGIN_CSRF,
        token,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    """The login form: one field, the API key."""
    if await load_viewer(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_form(request, request.query_params.get("next"))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key and start a session."""
    fields = await form(request)
    expected = request.cookies.get(LOGIN_CSRF)
    given = fields.get(sessions.CSRF_FIELD)
    if not expected or not given or not hmac.compare_digest(expected, given):
        return _login_form(request, fields.get("next"), "The form expired; please try again.", 403)
    try:
        key = await authenticate(request.app.state.catalog, fields.get("api_key") or None)
    except ProblemError:
        return _login_form(
            request, fields.get("next"), "The API key is invalid, revoked or expired.", 401
        )
    if Scope.JOBS_READ not in key.scopes and Scope.ADMIN not in key.scopes:
        return _login_form(
            request, fields.get("next"), "The API key lacks the 'jobs:read' scope.", 403
        )
    settings: Settings = request.app.state.settings
    session = sessions.new_session(
        key.id,
        key.prefix,
        key.tenant_id,
        datetime.now(UTC),
        timedelta(seconds=settings.console_session_seconds),
    )
    response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
    set_session(request, response, session)
    response.delete_cookie(LOGIN_CSRF, path="/ui/login")
    return response


@router.post("/logout")
async def logout(request: Request, viewer: ChangerDep) -> Response:
    """End the session (the cookie is dropped; a copy of it ends at its expiry)."""
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/ui")
    return response


@router.post("/tenant")
async def switch_tenant(request: Request, viewer: ChangerDep) -> Response:
    """The operator looks at another tenant."""
    if not viewer.operator:
        raise ProblemError(403, "Only the operator's key sees other tenants.")
    fields = await form(request)
    tenant = fields.get("tenant", "")
    async with request.app.state.db.connection() as conn:
        known = await queries.tenants(conn)
    if tenant not in known:
        raise ProblemError(404, f"No tenant {tenant!r}.")
    response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
    set_session(request, response, viewer.session.switched(tenant))
    return response
