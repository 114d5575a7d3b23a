"""FastAPI dependencies, declared once as ``Annotated`` aliases.

``Reader``/``Writer``/``Operator`` authenticate the bearer key, check its scope and take a
token from its rate-limit bucket, in that order: 401, then 403, then 429.

``ReaderTx`` and ``WriterTx`` do the same on the request's connection (``Conn``): the key
lookup is the first statement of the transaction the route then continues and commits, so a
request costs one pool checkout and no separate round trips for its authentication's own
BEGIN and ROLLBACK. A route that takes one of them must do its database work on ``Conn``.
``Reader``/``Writer``/``Operator`` authenticate on a short connection of their own, for
routes that open their own transactions (holding the request's connection idle meanwhile
would take two connections per request: under load, requests holding one and waiting for a
second can exhaust the pool). Nothing is cached either way: every request reads the key row
again, so a revocation committed before the request's first statement takes effect on it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobline.core.apikeys import Scope
from jobline.pg import keystore
from jobline.pg.keystore import KeyRecord
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway.ratelimit import TokenBuckets, retry_after_header
from jobline_gateway.settings import Settings

# auto_error=False: a missing header is our 401 problem, not FastAPI's plain 403.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")


# async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
# (and GIL hand-off) per dependency per request for what is an attribute read.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _buckets(request: Request) -> TokenBuckets[object]:
    buckets: TokenBuckets[object] = request.app.state.rate_limits
    return buckets


SettingsDep = Annotated[Settings, Depends(_settings)]
Engine = Annotated[AsyncEngine, Depends(_engine)]


async def _request_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """The request's one connection. Its transaction begins with the first statement (the
    key lookup); the route commits it. Whatever is left uncommitted -- an error, a read-only
    route -- is rolled back when the connection goes back to the pool, which happens as soon
    as the route returns (scope="function"), before the response is sent. (It reads the
    engine itself: every sub-dependency costs FastAPI per-request work.)"""
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        yield conn


Conn = Annotated[AsyncConnection, Depends(_request_connection, scope="function")]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, detail, kind="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="jobline"'}
    )


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _authenticate(conn: AsyncConnection, credentials: Credentials) -> KeyRecord:
    if credentials is None:
        raise _unauthorized("An API key is required: Authorization: Bearer <key>.")
    # No cache: a revoked key must fail on the very next request. The lookup is one
    # unique-index probe on api_keys.prefix.
    record = await keystore.authenticate(conn, credentials.credentials, datetime.now(UTC))
    if record is None:
        raise _unauthorized("The API key is invalid, revoked or expired.")
    return record


async def _principal(conn: Conn, credentials: Credentials) -> KeyRecord:
    """Authenticated on the request's connection, inside the transaction the route uses."""
    return await _authenticate(conn, credentials)


async def _principal_alone(engine: Engine, credentials: Credentials) -> KeyRecord:
    """Authenticated on a connection of its own, returned at once (routes that do not use
    ``Conn`` would otherwise hold a second connection idle in a transaction)."""
    if credentials is None:
        raise _unauthorized("An API key is required: Authorization: Bearer <key>.")
    async with engine.connect() as conn:
        return await _authenticate(conn, credentials)


# Module-level aliases: with postponed annotations FastAPI resolves these names in the
# module's globals, so the dependency cannot be a closure variable of _requires.
_PrincipalAlone = Annotated[KeyRecord, Depends(_principal_alone)]
_PrincipalTx = Annotated[KeyRecord, Depends(_principal)]
_Buckets = Annotated[TokenBuckets[object], Depends(_buckets)]


def _checked(scope: Scope, principal: KeyRecord, buckets: TokenBuckets[object]) -> KeyRecord:
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


def _requires(
    scope: Scope, *, on_request_connection: bool = False
) -> Callable[..., Awaitable[KeyRecord]]:
    """The dependency for ``scope``: on a connection of its own, or on the request's."""

    async def check(principal: _PrincipalAlone, buckets: _Buckets) -> KeyRecord:
        return _checked(scope, principal, buckets)

    async def check_tx(request: Request, principal: _PrincipalTx) -> KeyRecord:
        # The buckets straight from app state: one sub-dependency less on the hot routes.
        return _checked(scope, principal, request.app.state.rate_limits)

    return check_tx if on_request_connection else check


Reader = Annotated[KeyRecord, Depends(_requires(Scope.JOBS_READ))]
Writer = Annotated[KeyRecord, Depends(_requires(Scope.JOBS_WRITE))]
Operator = Annotated[KeyRecord, Depends(_requires(Scope.ADMIN))]
# On the request's connection (use Conn for the route's statements).
ReaderTx = Annotated[KeyRecord, Depends(_requires(Scope.JOBS_READ, on_request_connection=True))]
WriterTx = Annotated[KeyRecord, Depends(_requires(Scope.JOBS_WRITE, on_request_connection=True))]

# Schedules: changing needs schedules:write; reading needs jobs:read (Reader).
ScheduleWriter = Annotated[KeyRecord, Depends(_requires(Scope.SCHEDULES_WRITE))]


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def _known_query(request: Request) -> None:
    """An unknown or repeated query parameter is a 422 naming it, like an unknown body field:
    a typo (`?limt=5`) must not silently mean the default, and `?type=a&type=b` must not
    silently mean `b` (no query parameter of this API takes a list)."""
    route = request.scope.get("route")
    if route is None:
        return
    known = _query_names(route.dependant)
    problems = [
        FieldError(field=name, location="query", message="unknown parameter")
        for name in sorted(set(request.query_params) - known)
    ]
    problems += [
        FieldError(field=name, location="query", message="given more than once")
        for name in sorted(set(request.query_params) & known)
        if len(request.query_params.getlist(name)) > 1
    ]
    if problems:
        named = ", ".join(repr(p.field) for p in problems)
        raise ProblemError(
            422,
            f"Invalid query parameters: {named}.",
            kind="validation",
            title="Invalid request",
            errors=problems,
        )


KnownQuery = Depends(_known_query)
