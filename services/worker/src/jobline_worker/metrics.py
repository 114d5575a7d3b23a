"""The worker's Prometheus metrics, on the process registry (``/metrics``)."""

from __future__ import annotations

from typing import Final

from jobline.observe.metrics import LATENCY_BUCKETS, REGISTRY, Counter, Gauge, Histogram

# Run times and queue waits run longer than request latencies: extend the buckets.
RUN_BUCKETS: Final = (*LATENCY_BUCKETS, 120.0, 300.0, 900.0, 3600.0)

STARTED: Final = Counter(
    "jobline_worker_jobs_started_total",
    "Attempts started (claims that succeeded), by job type.",
    ["type", "queue"],
    registry=REGISTRY,
)
FINISHED: Final = Counter(
    "jobline_worker_jobs_finished_total",
    "Attempts finished, by job type and outcome "
    "(succeeded, failed, timeout, cancelled, handed_back, lease_lost).",
    ["type", "outcome"],
    registry=REGISTRY,
)
RUN_SECONDS: Final = Histogram(
    "jobline_worker_run_seconds",
    "Handler run time of an attempt, by job type.",
    ["type"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT_SECONDS: Final = Histogram(
    "jobline_worker_queue_wait_seconds",
    "From the job being due (run_at) to its claim, by job type.",
    ["type"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
PARTITIONS_RESTARTED: Final = Counter(
    "jobline_worker_partitions_restarted_total",
    "Partitions read again from the start because their log ended before the consumer's "
    "position (the broker lost it), by queue.",
    ["queue"],
    registry=REGISTRY,
)
IN_FLIGHT: Final = Gauge(
    "jobline_worker_in_flight",
    "Messages being claimed plus handlers running in this process.",
    registry=REGISTRY,
)
RETRIES: Final = Counter(
    "jobline_worker_retries_total",
    "Failed attempts that left the job retrying, by job type.",
    ["type"],
    registry=REGISTRY,
)
DLQ: Final = Counter(
    "jobline_worker_dlq_total",
    "Messages sent to the dead-letter topic, by reason "
    "(dead: the job exhausted or was non-retryable; undecodable; no_such_job; unknown_type).",
    ["reason"],
    registry=REGISTRY,
)
HELD: Final = Counter(
    "jobline_worker_jobs_held",
    "Jobs held at their claim because a concurrency or rate limit was full, by limit "
    "(kind:job type); the relay releases them as the limit frees.",
    ["limit"],
    registry=REGISTRY,
)
DUPLICATES: Final = Counter(
    "jobline_worker_duplicates_skipped_total",
    "Work messages skipped because their attempt was already claimed or is stale, by queue.",
    ["queue"],
    registry=REGISTRY,
)
LEASE_LOST: Final = Counter(
    "jobline_worker_lease_expiries_total",
    "Running attempts whose lease was found lost at renewal or completion (outcome dropped).",
    registry=REGISTRY,
)
CONSUMER_LAG: Final = Gauge(
    "jobline_worker_consumer_lag",
    "Messages on the work topic not yet committed by this worker's group, by queue "
    "(from the fetch highwater of the partitions this process owns).",
    ["queue"],
    registry=REGISTRY,
)
