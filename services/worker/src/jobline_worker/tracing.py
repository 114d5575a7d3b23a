"""The worker's run span: claim to outcome of one attempt, the current span of its handler.

Its parent is the relay's publish span when the work message carries a ``traceparent``
header, else the context the job stored at submit (a message published with tracing off).
Made only with tracing on (:mod:`jobline.observe.tracing`); a handler starts child spans
with ``opentelemetry.trace.get_tracer(...)`` as usual, or passes ``ctx.traceparent`` on.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from jobline.core.job import Job
from jobline.observe import tracing
from jobline_worker.outcomes import Outcome, Raised, Returned

HEADER: Final = "traceparent"


def header_traceparent(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The ``traceparent`` a Kafka message's headers carry, if any."""
    for name, value in headers or ():
        if name == HEADER and value:
            return value.decode("ascii", "replace")
    return None


def start_run_span(job: Job, topic: str, header: str | None, started_ns: int | None) -> Span:
    """The attempt's span, started when its message was taken for claiming."""
    return tracing.tracer().start_span(
        "jobline.run",
        context=tracing.context_of(header or job.traceparent),
        kind=SpanKind.CONSUMER,
        start_time=started_ns,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "jobline.job.id": str(job.id),
            "jobline.job.type": job.type,
            "jobline.job.attempt": job.attempt,
            "jobline.queue": job.queue,
            "jobline.tenant": job.tenant_id,
        },
    )


def handler_context(span: Span) -> contextvars.Context:
    """A copy of the current context in which ``span`` is the current span."""
    context = contextvars.copy_context()
    context.run(otel_context.attach, trace.set_span_in_context(span))
    return context


def end_run_span(span: Span, outcome: Outcome) -> None:
    """Close the span with the attempt's outcome."""
    span.set_attribute("jobline.outcome", type(outcome).__name__.lower())
    if isinstance(outcome, Raised):
        span.record_exception(outcome.error)
        span.set_status(StatusCode.ERROR, f"{type(outcome.error).__name__}: {outcome.error}")
    elif not isinstance(outcome, Returned):
        span.set_status(StatusCode.ERROR, type(outcome).__name__)
    span.end()
