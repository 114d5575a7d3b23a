"""The gateway's HTTP surface: the /v1 API plus health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from jobline.pg.db import Database
from jobline.web import problems
from jobline.web.addresslimit import AddressLimit
from jobline.web.health import add_standard_routes
from jobline.web.service import dependency_checks
from jobline_gateway import (
    admin,
    auditlog,
    console,
    counts,
    events,
    jobs,
    ownkeys,
    policies,
    quotas,
    registry_api,
    schedules,
    store,
    type_limits,
    webhooks,
    workflows,
)
from jobline_gateway.admission import GateSettings, SubmissionGate
from jobline_gateway.catalog import Catalog
from jobline_gateway.guard import BodyGuard
from jobline_gateway.metrics import RequestMetrics
from jobline_gateway.ratelimit import TokenBuckets
from jobline_gateway.registry_cache import RegistryCache
from jobline_gateway.settings import Settings

log = logging.getLogger(__name__)


async def _purge_idempotency_keys(app: FastAPI, interval: float) -> None:
    """Delete expired Idempotency-Keys now and then (reuse also overwrites them)."""
    while True:
        await asyncio.sleep(interval)
        try:
            async with app.state.db.connection() as conn:
                await store.purge_idempotency_keys(conn)
        except Exception:  # the next round retries; a failed purge harms nothing
            log.warning("purging expired idempotency keys failed", exc_info=True)


def submit_docs(schema: dict[str, Any]) -> dict[str, Any]:
    """The submit routes read their body themselves (see jobs.submit_router): document it as
    FastAPI documents a body parameter, with its Idempotency-Key header."""
    bodies = jobs.SUBMIT_BODIES
    _, definitions = models_json_schema(
        [(model, "validation") for model in bodies.values()],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault(name, definition)
    key_schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[\\x21-\\x7e]+$",
    }
    for item in schema["paths"].values():
        for operation in item.values():
            model = bodies.get(operation.get("operationId", ""))
            if model is None:
                continue
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
            operation["security"] = [{"HTTPBearer": []}]
            operation["parameters"] = [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": jobs.IDEMPOTENCY_KEY_DOC,
                    "schema": {
                        "anyOf": [key_schema, {"type": "null"}],
                        "title": "Idempotency-Key",
                        "description": jobs.IDEMPOTENCY_KEY_DOC,
                    },
                }
            ]
    return schema


def _docs_urls(on: bool) -> dict[str, Any]:
    if on:
        return {}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = await Database(settings, application_name="jobline-gateway").open()
        catalog = Catalog(database, connect_timeout=settings.db_connect_timeout_seconds)
        registry = RegistryCache(database, ttl=settings.gateway_registry_ttl_seconds)
        catalog.subscribers.append(registry.changed)
        app.state.db, app.state.catalog, app.state.registry = database, catalog, registry
        app.state.admission = SubmissionGate(
            database,
            settings.quota_defaults,
            GateSettings(
                lease_seconds=settings.quota_lease_seconds,
                lease_ttl_seconds=settings.quota_lease_ttl_seconds,
                cache_seconds=settings.quota_cache_seconds,
                unfinished_refresh_seconds=settings.quota_unfinished_refresh_seconds,
            ),
        )
        tasks = [
            asyncio.create_task(catalog.listener.run()),
            asyncio.create_task(
                _purge_idempotency_keys(app, settings.idempotency_purge_interval_seconds)
            ),
        ]
        try:
            yield
        finally:
            catalog.listener.stop()
            # The console's DLQ redrives still running stop here (the rest stays dead).
            for task in [*tasks, *app.state.console_tasks]:
                task.cancel()
            await asyncio.gather(*tasks, *app.state.console_tasks, return_exceptions=True)
            await database.close()

    app = FastAPI(
        title="Jobline gateway",
        version="0.1.0",
        description="Submit, inspect, cancel and redrive background jobs.",
        lifespan=lifespan,
        # Production: no interactive docs or schema unless JOBLINE_DOCS_ENABLED=true.
        **_docs_urls(settings.serve_docs),
    )
    app.state.settings = settings
    app.state.rate_limits = TokenBuckets[object](
        settings.gateway_rate_limit_per_second, settings.gateway_rate_limit_burst
    )
    problems.install(app)
    add_standard_routes(app, dependency_checks(settings, settings), terse=settings.production)
    app.include_router(jobs.submit_router)
    app.include_router(jobs.router)
    app.include_router(counts.router)
    app.include_router(admin.router)
    app.include_router(ownkeys.router)
    app.include_router(policies.router)
    app.include_router(quotas.router)
    app.include_router(auditlog.router)
    app.include_router(registry_api.router)
    app.include_router(type_limits.router)
    app.include_router(registry_api.admin_router)
    app.include_router(schedules.router)
    app.include_router(events.router)
    app.state.event_streams = events.StreamSlots(
        settings.gateway_event_streams_max, settings.gateway_event_streams_per_tenant_max
    )
    app.include_router(webhooks.router)
    app.include_router(workflows.router)
    console.install(app, settings)
    # Added last = outermost: metrics see every response, including the guard's 413/422;
    # the per-address limit runs before the body is read and before any authentication.
    app.add_middleware(BodyGuard, limit=settings.gateway_body_limit_bytes)
    app.add_middleware(
        AddressLimit,
        rate=settings.gateway_address_rate_per_second,
        burst=settings.gateway_address_burst,
    )
    app.add_middleware(RequestMetrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema = events.openapi_components(submit_docs(schema))
            schema = problems.document_unmatched_paths(problems.openapi_problem_content(schema))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
