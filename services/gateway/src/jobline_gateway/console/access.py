"""Who is looking at the console: the session cookie checked against the key it names.

Every page depends on :data:`ViewerDep`; every form that changes something on
:data:`ChangerDep`, which also checks the CSRF token. The key's scopes are the API's: a page
shows only what the key may read, a button works only if the key may do it (the operator's
``admin`` scope stands for every scope, on every tenant).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from jobline.core import scopes
from jobline.core.apikeys import Scope
from jobline.pg.keystore import KeyRecord
from jobline.web.problems import ProblemError
from jobline_gateway.console import session as sessions
from jobline_gateway.ratelimit import TokenBuckets, retry_after_header
from jobline_gateway.settings import Settings


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""

    def __init__(self, path: str) -> None:
        self.path = path


def secret_of(settings: Settings) -> bytes:
    """The configured signing secret, or a random one for this process."""
    configured = settings.console_session_secret
    return configured.get_secret_value().encode() if configured else secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class Viewer:
    """A logged-in key: ``principal`` is the key acting on the tenant the session shows."""

    session: sessions.Session
    key: KeyRecord
    csrf: str

    @property
    def operator(self) -> bool:
        return Scope.ADMIN in self.key.scopes

    @property
    def tenant(self) -> str:
        return self.session.tenant

    @property
    def principal(self) -> KeyRecord:
        """The key as the stores see it: scoped to the tenant on screen (the operator's
        choice; a tenant key's own, always)."""
        if self.key.tenant_id == self.tenant:
            return self.key
        return dataclasses.replace(self.key, tenant_id=self.tenant)

    def may(self, scope: Scope) -> bool:
        return scopes.allows(self.key.scopes, (scope, Scope.ADMIN))

    def require(self, scope: Scope) -> None:
        if not self.may(scope):
            raise ProblemError(403, f"The API key lacks the {scope.value!r} scope.")


async def load_viewer(request: Request) -> Viewer | None:
    """The request's session, if its cookie is genuine, unexpired and its key still usable."""
    state = request.app.state
    now = datetime.now(UTC)
    found = sessions.decode(request.cookies.get(sessions.COOKIE), state.console_secret, now)
    if found is None:
        return None
    stored = await state.catalog.key(found.prefix)
    if stored is None or stored.record.id != found.key_id or not stored.record.usable_at(now):
        return None
    record = stored.record
    if Scope.ADMIN not in record.scopes and found.tenant != record.tenant_id:
        return None  # a tenant key is never shown another tenant, whatever the cookie says
    return Viewer(found, record, sessions.csrf_token(found, state.console_secret))


def _take_token(request: Request, viewer: Viewer) -> None:
    # The API's per-key rate limit applies to the console's requests too.
    buckets: TokenBuckets[object] = request.app.state.rate_limits
    wait = buckets.take(viewer.key.id, time.monotonic())
    if wait is not None:
        raise ProblemError(
            429,
            "Rate limit exceeded for this API key.",
            kind="rate-limited",
            headers={"Retry-After": retry_after_header(wait)},
        )


async def _viewer(request: Request) -> Viewer:
    viewer = await load_viewer(request)
    if viewer is None:
        raise LoginRequired(request.url.path)
    if not viewer.may(Scope.JOBS_READ):
        raise ProblemError(403, "The API key lacks the 'jobs:read' scope the console needs.")
    _take_token(request, viewer)
    return viewer


async def form(request: Request) -> dict[str, str]:
    """The request's url-encoded form (the console's forms post nothing else); a field
    given more than once (checkboxes) holds its values joined by commas."""
    cached: dict[str, str] | None = getattr(request.state, "console_form", None)
    if cached is None:
        cached = {}
        body = (await request.body()).decode(errors="replace")
        for name, value in parse_qsl(body, keep_blank_values=True):
            cached[name] = f"{cached[name]},{value}" if name in cached else value
        request.state.console_form = cached
    return cached


async def _changer(request: Request, viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    given = request.headers.get(sessions.CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        given = (await form(request)).get(sessions.CSRF_FIELD)
    if not sessions.csrf_ok(viewer.session, request.app.state.console_secret, given):
        raise ProblemError(403, "The form's CSRF token is missing or wrong.", kind="csrf")
    return viewer


ViewerDep = Annotated[Viewer, Depends(_viewer)]
ChangerDep = Annotated[Viewer, Depends(_changer)]


def to_login(request: Request, exc: Exception) -> Response:
    """Send an anonymous browser to the login page (htmx: a full-page redirect)."""
    assert isinstance(exc, LoginRequired)
    target = "/ui/login?next=" + quote(exc.path, safe="/")
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
