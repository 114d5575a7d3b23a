"""A worker app for the tracing test: handlers that start a span of their own."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from jobline_worker.context import JobContext
from jobline_worker.registry import Worker

QUEUE = "traced-e2e"
worker = Worker()
_tracer = trace.get_tracer("tests.traced_app")


@worker.job("traced-async", queue=QUEUE)
async def traced_async(ctx: JobContext, payload: Any) -> dict[str, Any]:
    with _tracer.start_as_current_span("handler-step-async"):
        return {"traceparent": ctx.traceparent}


@worker.job("traced-sync", queue=QUEUE)
def traced_sync(ctx: JobContext, payload: Any) -> dict[str, Any]:
    with _tracer.start_as_current_span("handler-step-sync"):
        return {"traceparent": ctx.traceparent}
