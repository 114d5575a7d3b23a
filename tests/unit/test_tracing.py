"""Trace-context plumbing: exporter names, traceparent round trips, run span outcomes."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from jobline.observe import tracing
from jobline.observe.spanfile import JsonLinesSpanExporter
from jobline_worker import tracing as run_spans
from jobline_worker.outcomes import Raised, Returned, TimedOut

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (None, []),
        ("", []),
        ("none", []),
        ("otlp", ["otlp_proto_http"]),
        ("console, jobline_jsonl", ["console", "jobline_jsonl"]),
        ("console,none", []),
    ],
)
def test_exporter_names(value, names):
    assert tracing.exporter_names(value) == names


def test_an_exporter_that_is_not_installed_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(tracing.TracingConfigError, match="zipkin"):
        tracing.configure("test")
    assert not tracing.enabled()


def test_tracing_is_off_without_the_variable(monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert tracing.configure("test") is False
    assert not tracing.enabled()


def test_a_traceparent_names_the_parent_of_a_new_span():
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("child", context=tracing.context_of(TRACEPARENT))
    assert isinstance(span, ReadableSpan)
    context = span.get_span_context()
    assert format(context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    own = tracing.traceparent_of(span)
    assert own == f"00-0af7651916cd43dd8448eb211c80319c-{context.span_id:016x}-01"


def test_no_traceparent_starts_a_new_trace():
    assert tracing.context_of(None) is None
    assert tracing.context_of("") is None
    assert tracing.traceparent_of(trace.INVALID_SPAN) is None


def test_the_header_traceparent():
    assert run_spans.header_traceparent(None) is None
    assert run_spans.header_traceparent([("content-type", b"x")]) is None
    assert run_spans.header_traceparent([("traceparent", TRACEPARENT.encode())]) == TRACEPARENT


def _recorded(outcome):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span("jobline.run")
    run_spans.end_run_span(span, outcome)
    (finished,) = exporter.get_finished_spans()
    return finished


def test_a_returned_attempt_ends_its_span_unset():
    span = _recorded(Returned(1))
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["jobline.outcome"] == "returned"


def test_a_raised_attempt_records_the_error():
    span = _recorded(Raised(ValueError("boom")))
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError: boom" in (span.status.description or "")
    assert span.events[0].name == "exception"


def test_a_timed_out_attempt_is_an_error():
    assert _recorded(TimedOut(1.0)).status.status_code is StatusCode.ERROR


async def test_the_handler_context_makes_the_run_span_current():
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("jobline.run")

    async def handler():
        return trace.get_current_span()

    task = asyncio.get_running_loop().create_task(
        handler(), context=run_spans.handler_context(span)
    )
    assert await task is span
    assert trace.get_current_span() is not span  # the caller's context is untouched


def test_the_jsonl_exporter_appends_one_line_per_span(tmp_path):
    path = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(str(path))))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    inner, outer = (json.loads(line) for line in lines)
    assert inner["parent_span_id"] == outer["span_id"]
    assert outer["parent_span_id"] is None
