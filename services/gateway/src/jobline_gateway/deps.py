"""FastAPI dependencies, declared once as ``Annotated`` aliases.

``Reader``/``Writer``/``Operator`` authenticate the bearer key, check its scope and take a
token from its rate-limit bucket, in that order: 401, then 403, then 429.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline import keystore
from jobline.apikeys import Scope
from jobline.keystore import KeyRecord
from jobline_gateway.problems import ProblemError
from jobline_gateway.ratelimit import TokenBuckets, retry_after_header
from jobline_gateway.settings import Settings

# auto_error=False: a missing header is our 401 problem, not FastAPI's plain 403.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def _buckets(request: Request) -> TokenBuckets[object]:
    buckets: TokenBuckets[object] = request.app.state.rate_limits
    return buckets


SettingsDep = Annotated[Settings, Depends(_settings)]
Engine = Annotated[AsyncEngine, Depends(_engine)]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, detail, kind="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="jobline"'}
    )


async def _principal(
    engine: Engine,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeyRecord:
    if credentials is None:
        raise _unauthorized("An API key is required: Authorization: Bearer <key>.")
    # No cache: a revoked key must fail on the very next request. The lookup is one
    # unique-index probe on api_keys.prefix.
    async with engine.connect() as conn:
        record = await keystore.authenticate(conn, credentials.credentials, datetime.now(UTC))
    if record is None:
        raise _unauthorized("The API key is invalid, revoked or expired.")
    return record


def _requires(scope: Scope) -> Callable[..., Awaitable[KeyRecord]]:
    async def check(
        principal: Annotated[KeyRecord, Depends(_principal)],
        buckets: Annotated[TokenBuckets[object], Depends(_buckets)],
    ) -> KeyRecord:
        if scope not in principal.scopes:
            raise ProblemError(403, f"The API key lacks the {scope.value!r} scope.")
        wait = buckets.take(principal.id, time.monotonic())
        if wait is not None:
            raise ProblemError(
                429,
                "Rate limit exceeded for this API key.",
                kind="rate-limited",
                headers={"Retry-After": retry_after_header(wait)},
            )
        return principal

    return check


Reader = Annotated[KeyRecord, Depends(_requires(Scope.JOBS_READ))]
Writer = Annotated[KeyRecord, Depends(_requires(Scope.JOBS_WRITE))]
Operator = Annotated[KeyRecord, Depends(_requires(Scope.ADMIN))]
