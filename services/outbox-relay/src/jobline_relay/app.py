"""The outbox relay's process: background loops in the lifespan, health, readiness, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from jobline.pg.db import Database
from jobline.web.health import add_standard_routes
from jobline.web.service import dependency_checks
from jobline_relay.relay import Relay
from jobline_relay.settings import Settings


def create_app(settings: Settings) -> Starlette:
    relay: Relay | None = None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal relay
        database = await Database(settings, application_name="jobline-relay").open()
        relay = Relay(settings, database)
        relay.start()
        try:
            yield
        finally:
            # uvicorn gets here on SIGTERM once HTTP is drained: finish the batch, exit 0.
            await relay.stop()
            await database.close()

    async def publisher() -> None:
        if relay is not None:
            await relay.check()

    app = Starlette(lifespan=lifespan)
    add_standard_routes(app, {**dependency_checks(settings, settings), "publisher": publisher})
    return app
