"""The gateway's submit span: a child of the caller's ``traceparent``, parent of the job's.

With tracing off (:mod:`jobline.observe.tracing`) no span is made and the job keeps the
caller's ``traceparent`` as it came, so a trace still joins the client and the worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import SpanKind

from jobline.observe import tracing


@contextmanager
def submit_span(
    given: str | None, *, tenant: str, endpoint: str, jobs: int
) -> Iterator[str | None]:
    """Yields the ``traceparent`` the submitted jobs store."""
    if not tracing.enabled():
        yield given
        return
    with tracing.tracer().start_as_current_span(
        "jobline.submit",
        context=tracing.context_of(given),
        kind=SpanKind.SERVER,
        attributes={"jobline.tenant": tenant, "jobline.endpoint": endpoint, "jobline.jobs": jobs},
    ) as span:
        yield tracing.traceparent_of(span)
