"""A span exporter that appends finished spans to a file, one JSON object a line.

For tests and local debugging (``OTEL_TRACES_EXPORTER=jobline_jsonl``): several processes
may share one file, since each line is written with a single ``write`` on a file opened for
appending. ``JOBLINE_OTEL_JSONL_PATH`` names the file (default ``spans.jsonl``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

PATH_VARIABLE: Final = "JOBLINE_OTEL_JSONL_PATH"


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The parts of a span a reader needs to rebuild the tree, as plain JSON."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get(PATH_VARIABLE, "spans.jsonl")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
