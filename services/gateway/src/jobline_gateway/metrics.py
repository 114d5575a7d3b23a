"""The gateway's Prometheus metrics and the middleware that counts requests."""

from __future__ import annotations

import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobline.observe.metrics import LATENCY_BUCKETS, REGISTRY, Counter, Gauge, Histogram

REQUESTS: Final = Counter(
    "jobline_gateway_requests_total",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
SUBMIT_SECONDS: Final = Histogram(
    "jobline_gateway_submit_seconds",
    "Time to accept a submission (validation, transaction, commit) by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
JOBS_SUBMITTED: Final = Counter(
    "jobline_gateway_jobs_submitted_total",
    "Jobs accepted (idempotent replays not counted) by job type.",
    ["type"],
    registry=REGISTRY,
)
IDEMPOTENT_REPLAYS: Final = Counter(
    "jobline_gateway_idempotent_replays_total",
    "Submissions answered from an existing Idempotency-Key.",
    registry=REGISTRY,
)
EVENT_STREAMS: Final = Gauge(
    "jobline_gateway_event_streams",
    "Open GET /v1/events/stream responses in this gateway process.",
    registry=REGISTRY,
)
EVENT_STREAMS_REFUSED: Final = Counter(
    "jobline_gateway_event_streams_refused_total",
    "Event streams refused: the tenant's share (tenant) or the gateway's capacity (gateway)"
    " was open already.",
    ["limit"],
    registry=REGISTRY,
)


class RequestMetrics:
    """Counts every response by the matched route's template (not the raw path: bounded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            template = template or "unmatched"
            REQUESTS.labels(template, scope.get("method", ""), str(status)).inc()


def elapsed_since(started: float) -> float:
    return time.perf_counter() - started
