"""The relay's publish spans: one per work message, a child of the job's stored context.

Made only with tracing on (:mod:`jobline.observe.tracing`); the span's ``traceparent``
travels in the message's Kafka headers, where the worker picks it up as its run span's
parent. With tracing off the message carries no header and the worker continues the
context stored in the work message itself.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span, SpanKind, StatusCode

from jobline.core import jsontext
from jobline.observe import tracing

Headers = list[tuple[str, bytes]]


class PublishSpans:
    """The publish spans of one batch, ended together when the broker has answered."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def start(self, topic: str, value: bytes) -> Headers:
        """Start the span of the work message ``value``; the headers that carry it."""
        try:
            data: Any = jsontext.loads(value)
        except ValueError:
            data = None
        fields = data if isinstance(data, dict) else {}
        span = tracing.tracer().start_span(
            "jobline.publish",
            context=tracing.context_of(fields.get("traceparent")),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "jobline.job.id": str(fields.get("id")),
                "jobline.job.type": str(fields.get("type")),
                "jobline.job.attempt": int(fields.get("attempt") or 0),
            },
        )
        self.spans.append(span)
        traceparent = tracing.traceparent_of(span)
        return [("traceparent", traceparent.encode())] if traceparent else []

    def end(self, error: BaseException | None) -> None:
        for span in self.spans:
            if error is not None:
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, str(error))
            span.end()
        self.spans.clear()
