"""The outbox relay's process: background loops in the lifespan, health, readiness, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from jobline.pg import db
from jobline.web.service import add_standard_routes, dependency_checks
from jobline_relay.relay import Relay
from jobline_relay.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    relay: Relay | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal relay
        engine = db.create_engine(settings, application_name="jobline-relay")
        relay = Relay(settings, engine)
        relay.start()
        try:
            yield
        finally:
            # uvicorn gets here on SIGTERM once HTTP is drained: finish the batch, exit 0.
            await relay.stop()
            await engine.dispose()

    async def publisher() -> None:
        if relay is not None:
            await relay.check()

    app = FastAPI(title="Jobline outbox relay", version="0.1.0", lifespan=lifespan)
    add_standard_routes(app, {**dependency_checks(settings, settings), "publisher": publisher})
    return app
