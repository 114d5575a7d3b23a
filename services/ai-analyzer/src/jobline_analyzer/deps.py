"""FastAPI dependencies of the analyzer's API, declared once."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.core import scopes as scope_rules
from jobline.core.apikeys import Scope
from jobline.core.tokens import TokenBuckets, retry_after_header
from jobline.pg import keystore
from jobline.pg.audit import Actor
from jobline.pg.db import Database
from jobline.pg.keystore import KeyRecord
from jobline.web.problems import ProblemError
from jobline_analyzer.settings import Settings

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobline"'}


def get_engine(request: Request) -> AsyncEngine:
    """The app's database engine (created in the lifespan)."""
    engine: AsyncEngine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


Engine = Annotated[AsyncEngine, Depends(get_engine)]
AppSettings = Annotated[Settings, Depends(get_settings)]


async def authenticate(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> KeyRecord:
    """The API key of a ``Authorization: Bearer <key>`` header, or 401."""
    if authorization is None:
        raise ProblemError(
            401, "an API key is required (Authorization: Bearer <key>)", headers=_CHALLENGE
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "use Authorization: Bearer <key>", headers=_CHALLENGE)
    database: Database = request.app.state.db
    async with database.connection() as conn:
        key = await keystore.authenticate(conn, token.strip(), datetime.now(UTC))
    if key is None:
        raise ProblemError(401, "the API key is invalid, revoked or expired", headers=_CHALLENGE)
    buckets: TokenBuckets[object] = request.app.state.rate_limits
    wait = buckets.take(key.id, time.monotonic())
    if wait is not None:
        raise ProblemError(
            429,
            "rate limit exceeded for this API key",
            kind="rate-limited",
            headers={"Retry-After": retry_after_header(wait)},
        )
    return key


def _require(*scopes: Scope) -> Callable[..., Awaitable[KeyRecord]]:
    async def check(key: Annotated[KeyRecord, Depends(authenticate)]) -> KeyRecord:
        if not scope_rules.allows(key.scopes, scopes):
            needed = " or ".join(s.value for s in scopes)
            raise ProblemError(403, f"this API key lacks the scope {needed}")
        return key

    return check


Reader = Annotated[KeyRecord, Depends(_require(Scope.JOBS_READ, Scope.ADMIN))]
# Applying a recommendation changes the tenant's job-type policy: policies:write (or admin).
PolicyWriter = Annotated[KeyRecord, Depends(_require(*scope_rules.POLICY_WRITERS))]


def actor(request: Request, key: KeyRecord) -> Actor:
    """Who acts, for the audit log."""
    return Actor(key.id, key.tenant_id, request.client.host if request.client else None)
