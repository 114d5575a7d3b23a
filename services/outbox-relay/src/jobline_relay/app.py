"""The outbox relay's HTTP surface: health, readiness and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from jobline.service import add_standard_routes, dependency_checks
from jobline_relay.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="Jobline outbox relay", version="0.1.0")
    add_standard_routes(app, dependency_checks(settings, settings))
    return app
