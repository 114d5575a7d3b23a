"""The worker's HTTP surface: health, readiness and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from jobline.service import add_standard_routes, dependency_checks
from jobline_worker.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="Jobline worker", version="0.1.0")
    add_standard_routes(app, dependency_checks(settings, settings))
    return app
