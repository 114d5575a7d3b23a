"""FastAPI dependencies, declared once as ``Annotated`` aliases.

``Reader``/``Writer``/``Operator``/``ScheduleWriter``/``KeyManager``/``PolicyWriter``/
``WebhookManager`` authenticate the bearer key, check its scope and take a token from its
rate-limit bucket, in that order: 401, then 403, then 429.
The key row comes from the gateway's :class:`~jobline_gateway.catalog.Catalog` (no database
round trip while it is live); the hash is compared in constant time on every request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobline.core import apikeys, scopes
from jobline.core.apikeys import Scope
from jobline.pg.audit import Actor
from jobline.pg.db import Database
from jobline.pg.keystore import KeyRecord
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway.admission import SubmissionGate
from jobline_gateway.catalog import Catalog
from jobline_gateway.ratelimit import TokenBuckets, retry_after_header
from jobline_gateway.settings import Settings

# auto_error=False: a missing header is our 401 problem, not FastAPI's plain 403.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")


# async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
# (and GIL hand-off) per dependency per request for what is an attribute read.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _admission(request: Request) -> SubmissionGate:
    gate: SubmissionGate = request.app.state.admission
    return gate


async def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


SettingsDep = Annotated[Settings, Depends(_settings)]
Db = Annotated[Database, Depends(_db)]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
AdmissionDep = Annotated[SubmissionGate, Depends(_admission)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, detail, kind="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="jobline"'}
    )


async def authenticate(catalog: Catalog, plaintext: str | None) -> KeyRecord:
    """The usable key ``plaintext`` names, or a 401 problem."""
    if plaintext is None:
        raise _unauthorized("An API key is required: Authorization: Bearer <key>.")
    try:
        prefix = apikeys.prefix_of(plaintext)
    except apikeys.MalformedKey:
        raise _unauthorized("The API key is invalid, revoked or expired.") from None
    stored = await catalog.key(prefix)
    if (
        stored is None
        or not apikeys.verify(plaintext, stored.key_hash)
        or not stored.record.usable_at(datetime.now(UTC))
    ):
        raise _unauthorized("The API key is invalid, revoked or expired.")
    return stored.record


def revoked() -> ProblemError:
    """The 401 of a key the database refused at write time (revoked a moment ago)."""
    return _unauthorized("The API key is invalid, revoked or expired.")


def bearer(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header (as FastAPI's HTTPBearer reads it)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    return credentials if scheme.lower() == "bearer" and credentials else None


async def authorize(request: Request, scope: Scope, *alternatives: Scope) -> KeyRecord:
    """Authenticate the request's key, check it holds ``scope`` (or one of ``alternatives``),
    take a rate-limit token: 401/403/429."""
    state = request.app.state
    principal = await authenticate(state.catalog, bearer(request))
    if not scopes.allows(principal.scopes, (scope, *alternatives)):
        needed = " or ".join(repr(s.value) for s in (scope, *alternatives))
        raise ProblemError(403, f"The API key lacks the {needed} scope.")
    buckets: TokenBuckets[object] = state.rate_limits
    wait = buckets.take(principal.id, time.monotonic())
    if wait is not None:
        raise ProblemError(
            429,
            "Rate limit exceeded for this API key.",
            kind="rate-limited",
            headers={"Retry-After": retry_after_header(wait)},
        )
    return principal


def _requires(scope: Scope, *alternatives: Scope) -> Callable[..., Awaitable[KeyRecord]]:
    # ``_credentials`` only documents the scheme in the OpenAPI; authorize() reads the header.
    async def check(request: Request, _credentials: Credentials) -> KeyRecord:
        return await authorize(request, scope, *alternatives)

    return check


Reader = Annotated[KeyRecord, Depends(_requires(Scope.JOBS_READ))]
Writer = Annotated[KeyRecord, Depends(_requires(Scope.JOBS_WRITE))]
Operator = Annotated[KeyRecord, Depends(_requires(Scope.ADMIN))]
# Schedules: changing needs schedules:write; reading needs jobs:read (Reader).
ScheduleWriter = Annotated[KeyRecord, Depends(_requires(Scope.SCHEDULES_WRITE))]
# A tenant's own keys (never another tenant's; never a scope the caller lacks).
KeyManager = Annotated[KeyRecord, Depends(_requires(Scope.KEYS_MANAGE))]
# A tenant's job-type policies; the operator may set them too.
PolicyWriter = Annotated[KeyRecord, Depends(_requires(Scope.POLICIES_WRITE, Scope.ADMIN))]
# A tenant's webhook endpoints, their secrets and delivery log.
WebhookManager = Annotated[KeyRecord, Depends(_requires(Scope.WEBHOOKS_MANAGE))]


def client_address(request: Request) -> str | None:
    """The client's address as this process saw it (a proxy's, unless uvicorn is told to
    trust its forwarding headers: ``--forwarded-allow-ips``)."""
    return request.client.host if request.client else None


def actor(request: Request, principal: KeyRecord) -> Actor:
    """Who acts, for the audit log."""
    return Actor(principal.id, principal.tenant_id, client_address(request))


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
