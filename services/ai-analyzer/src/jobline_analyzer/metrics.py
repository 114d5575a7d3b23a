"""The analyzer's Prometheus metrics (declared on jobline's registry)."""

from __future__ import annotations

from jobline.observe.metrics import REGISTRY, Counter, Gauge

EVENTS = Counter(
    "jobline_analyzer_events_total",
    "Lifecycle events read by the analyzer, by result (counted, duplicate, invalid).",
    ["result"],
    registry=REGISTRY,
)
FINDINGS = Counter(
    "jobline_analyzer_findings_total",
    "Anomalies found, by kind.",
    ["kind"],
    registry=REGISTRY,
)
ACTIVE = Gauge(
    "jobline_analyzer_active_anomalies",
    "Anomalies in progress, by tenant, job type and kind.",
    ["tenant", "job_type", "kind"],
    registry=REGISTRY,
)
LAST_BUCKET = Gauge(
    "jobline_analyzer_last_bucket_timestamp_seconds",
    "Start of the newest bucket the detectors have seen, by tenant and job type.",
    ["tenant", "job_type"],
    registry=REGISTRY,
)
PUBLISHED = Counter(
    "jobline_analyzer_insights_published_total",
    "Findings published on the insights topic.",
    registry=REGISTRY,
)
