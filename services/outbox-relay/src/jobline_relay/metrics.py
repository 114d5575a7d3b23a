"""The relay's Prometheus metrics, all on :data:`jobline.metrics.REGISTRY`."""

from __future__ import annotations

from typing import Final

from jobline import topics
from jobline.metrics import LATENCY_BUCKETS, REGISTRY, Counter, Gauge, Histogram

BATCH_BUCKETS: Final = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

OUTBOX_BACKLOG: Final = Gauge(
    "jobline_outbox_backlog_rows",
    "Outbox rows due now (published soon, or stuck if it keeps growing).",
    registry=REGISTRY,
)
OUTBOX_OLDEST_AGE: Final = Gauge(
    "jobline_outbox_oldest_due_age_seconds",
    "How long the oldest due outbox row has been due (0 when none is).",
    registry=REGISTRY,
)
PUBLISH_BATCH_SIZE: Final = Histogram(
    "jobline_relay_publish_batch_size",
    "Rows per published batch.",
    buckets=BATCH_BUCKETS,
    registry=REGISTRY,
)
PUBLISH_LATENCY: Final = Histogram(
    "jobline_relay_publish_latency_seconds",
    "From sending a batch to the broker until every message of it is acknowledged.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
PUBLISHED: Final = Counter(
    "jobline_relay_published_messages",
    "Messages published and deleted from the outbox, by topic kind.",
    ["kind"],
    registry=REGISTRY,
)
PUBLISH_ERRORS: Final = Counter(
    "jobline_relay_publish_errors",
    "Batches that failed (rolled back, retried after a backoff), by error class.",
    ["error"],
    registry=REGISTRY,
)
JOBS_MADE_DUE: Final = Counter(
    "jobline_relay_jobs_made_due",
    "Delayed jobs (scheduled or retrying) that became queued as their message was published.",
    registry=REGISTRY,
)
LEASE_EXPIRIES: Final = Counter(
    "jobline_lease_expiries",
    "Running jobs whose lease expired, by what became of them (retrying or dead).",
    ["outcome"],
    registry=REGISTRY,
)


def topic_kind(logical: str) -> str:
    """The label for a logical topic: work, dlq, events or insights."""
    if logical == topics.DLQ:
        return "dlq"
    if logical.startswith(topics.WORK_PREFIX):
        return "work"
    return logical
