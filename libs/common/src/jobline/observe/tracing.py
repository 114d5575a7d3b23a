"""OpenTelemetry traces along a job's path: submit (gateway), publish (relay), run (worker).

Off unless ``OTEL_TRACES_EXPORTER`` names one or more installed span exporters (the
standard variable; names from the ``opentelemetry_traces_exporter`` entry points:
``otlp`` / ``otlp_proto_http``, ``console``, and ``jobline_jsonl``, which appends finished
spans to the file ``JOBLINE_OTEL_JSONL_PATH``). Off, nothing is imported beyond the API and
the hot path does not create a single object for tracing: the gateway stores the client's
``traceparent`` as it came and the worker continues it, exactly as before.

On, the SDK reads the other standard variables itself (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_*``, ``OTEL_BSP_*``,
``OTEL_TRACES_SAMPLER``). The W3C ``traceparent`` joins the processes: the gateway's
submit span is a child of the client's, and its context is what the job stores; the
relay's publish span is a child of that and travels in the work message's Kafka headers;
the worker's run span is a child of the publish span (or of the stored context, for a
message sent with tracing off), and is the current span while the handler runs, so spans
the handler starts are its children.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

TRACER_NAME: Final = "jobline"
EXPORTER_GROUP: Final = "opentelemetry_traces_exporter"
# `otlp` is the name the OpenTelemetry distributions give the OTLP exporter; this project
# installs its HTTP/protobuf flavour (no gRPC stack).
_ALIASES: Final = {"otlp": "otlp_proto_http"}
_PROPAGATOR: Final = TraceContextTextMapPropagator()


class TracingConfigError(ValueError):
    """OTEL_TRACES_EXPORTER names an exporter that is not installed."""


_provider: TracerProvider | None = None


def enabled() -> bool:
    """Whether spans are recorded in this process (configure() found an exporter)."""
    return _provider is not None


def exporter_names(value: str | None) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for, aliases resolved; [] for none."""
    names = [n.strip().lower() for n in (value or "").split(",") if n.strip()]
    if "none" in names:
        return []
    return [_ALIASES.get(n, n) for n in names]


def configure(service_name: str) -> bool:
    """Install the SDK's tracer provider when OTEL_TRACES_EXPORTER asks for exporters."""
    global _provider  # noqa: PLW0603 - one provider per process, like the SDK's global
    names = exporter_names(os.environ.get("OTEL_TRACES_EXPORTER"))
    if not names or _provider is not None:
        return _provider is not None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    for exporter in _exporters(names):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing on: exporting spans to %s", ", ".join(names))
    return True


def shutdown() -> None:
    """Flush and stop the exporters (at the end of the process's life)."""
    global _provider  # noqa: PLW0603
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def _exporters(names: Iterable[str]) -> list[SpanExporter]:
    installed = {e.name: e for e in entry_points(group=EXPORTER_GROUP)}
    exporters = []
    for name in names:
        if name not in installed:
            known = ", ".join(sorted(installed)) or "none"
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER names {name!r}, which is not installed (installed: {known})"
            )
        exporters.append(installed[name].load()())
    return exporters


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a W3C ``traceparent`` names, for a span's parent (None: a new trace)."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def traceparent_of(span: trace.Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (None for an invalid span)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return carrier.get("traceparent")
