"""The AI analyzer service: ingest, detection loop and the insights API in one lifespan.

Startup opens the database engine and (with background work on) ensures the events and
insights topics, starts the producer, and runs the ingest, detection and retention loops as
tasks.
Shutdown (uvicorn's SIGTERM handling) signals every loop to stop after its current
batch, tick or round, waits for them, then closes the producer and the engine: exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from jobline.broker.kafka import ensure_topics, make_producer
from jobline.core import topics
from jobline.core.tokens import TokenBuckets
from jobline.pg import engine as db
from jobline.pg.db import Database
from jobline.web import problems
from jobline.web.addresslimit import AddressLimit
from jobline.web.health import add_standard_routes
from jobline.web.service import dependency_checks
from jobline_analyzer import api
from jobline_analyzer.detection import DetectionLoop
from jobline_analyzer.ingest import Ingestor
from jobline_analyzer.retention import AnalyzerRetention
from jobline_analyzer.settings import Settings

log = logging.getLogger("jobline.analyzer")
STOP_TIMEOUT_SECONDS = 15.0


def create_app(settings: Settings) -> FastAPI:
    """The analyzer's FastAPI app; its lifespan runs the background loops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings, application_name="jobline-analyzer")
        app.state.engine = engine
        app.state.db = await Database(settings, application_name="jobline-analyzer").open()
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        producer = None
        try:
            if settings.analyzer_background:
                prefix = settings.topic_prefix
                await ensure_topics(
                    settings, [topics.events_topic(prefix), topics.insights_topic(prefix)]
                )
                producer = make_producer(settings)
                await producer.start()
                ingestor = Ingestor(settings, engine)
                app.state.ingestor = ingestor
                app.state.detection = DetectionLoop(
                    settings, engine, producer, watermark=lambda: ingestor.caught_up_at
                )
                tasks = [
                    asyncio.create_task(app.state.ingestor.run(stop), name="analyzer-ingest"),
                    asyncio.create_task(app.state.detection.run(stop), name="analyzer-detect"),
                    asyncio.create_task(
                        AnalyzerRetention(settings, engine).run(stop), name="analyzer-retention"
                    ),
                ]
            yield
        finally:
            stop.set()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
                for task in pending:
                    log.warning("%s did not stop in time; cancelling it", task.get_name())
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if producer is not None:
                await producer.stop()
            await engine.dispose()
            await app.state.db.close()

    docs: dict[str, Any] = (
        {} if settings.serve_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    )
    app = FastAPI(title="Jobline AI analyzer", version="0.1.0", lifespan=lifespan, **docs)
    app.state.settings = settings
    app.state.rate_limits = TokenBuckets[object](
        settings.analyzer_rate_limit_per_second, settings.analyzer_rate_limit_burst
    )
    app.add_middleware(
        AddressLimit,
        rate=settings.analyzer_address_rate_per_second,
        burst=settings.analyzer_address_burst,
    )
    problems.install(app)
    add_standard_routes(app, dependency_checks(settings, settings), terse=settings.production)
    app.include_router(api.router)
    return app
