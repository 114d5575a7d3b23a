"""The outbox relay's process: background loops in the lifespan, health, readiness, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from jobline.pg.db import Database
from jobline.web.health import add_standard_routes
from jobline.web.service import dependency_checks
from jobline_relay.relay import Relay
from jobline_relay.retention import Retention
from jobline_relay.settings import Settings
from jobline_relay.webhooks import Webhooks


def create_app(settings: Settings) -> Starlette:
    relay: Relay | None = None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal relay
        # Every write of the relay can be lost in a server crash without harm: a lost delete
        # re-publishes (a duplicate the claim absorbs), a lost due flip, rescue or schedule
        # fire is done again from the rows as they were. So its commits do not wait for the
        # WAL flush: one fsync fewer per batch on the path of every job.
        database = await Database(
            settings, application_name="jobline-relay", synchronous_commit=False
        ).open()
        relay = Relay(settings, database)
        relay.start()
        # Housekeeping runs beside the relay's loops, not in them: a slow purge never delays
        # a publish, and the purge has its own switch (retention_enabled).
        retention = Retention(settings, database) if settings.retention_enabled else None
        if retention is not None:
            retention.start()
        # Webhooks too: a slow receiver never delays a publish (own loops, own switch).
        webhooks = Webhooks(settings, database) if settings.webhooks_enabled else None
        if webhooks is not None:
            webhooks.start()
        try:
            yield
        finally:
            # uvicorn gets here on SIGTERM once HTTP is drained: finish the batch, exit 0.
            if webhooks is not None:
                await webhooks.stop()
            if retention is not None:
                await retention.stop()
            await relay.stop()
            await database.close()

    async def publisher() -> None:
        if relay is not None:
            await relay.check()

    app = Starlette(lifespan=lifespan)
    add_standard_routes(
        app,
        {**dependency_checks(settings, settings), "publisher": publisher},
        terse=settings.production,
    )
    return app
