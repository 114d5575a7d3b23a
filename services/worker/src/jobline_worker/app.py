"""The worker's HTTP surface (health, readiness, metrics); the runtime lives in its lifespan.

A plain Starlette app: the worker SDK installs without FastAPI. uvicorn's SIGTERM handling
stops the server, then the lifespan's exit drains the runtime (in-flight handlers finish or
are handed back, offsets are committed) and the process exits 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from jobline.web.health import add_standard_routes
from jobline.web.service import dependency_checks
from jobline_worker.runtime import Runtime
from jobline_worker.settings import Settings


def create_app(settings: Settings, runtime: Runtime | None = None) -> Starlette:
    """The worker app; with a ``runtime`` it consumes jobs for as long as the app runs."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if runtime is None:
            yield
            return
        try:
            await runtime.start()
        except BaseException:
            await runtime.stop()
            raise
        try:
            yield
        finally:
            await runtime.stop()

    app = Starlette(lifespan=lifespan)
    add_standard_routes(app, dependency_checks(settings, settings), terse=settings.production)
    return app
