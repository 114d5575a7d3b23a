"""The relay's Prometheus metrics, all on :data:`jobline.metrics.REGISTRY`."""

from __future__ import annotations

from typing import Final

from jobline.core import topics
from jobline.observe.metrics import LATENCY_BUCKETS, REGISTRY, Counter, Gauge, Histogram

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
JOBS_HEALED: Final = Counter(
    "jobline_relay_jobs_healed_total",
    "Work messages of queued jobs published again because the job waited too long (the "
    "broker may have lost the first), by queue.",
    ["queue"],
    registry=REGISTRY,
)
LOGS_WENT_BACK: Final = Counter(
    "jobline_relay_broker_logs_went_back_total",
    "Batches in which the broker acknowledged a message at or below an offset it had already "
    "acknowledged on that partition: it lost the partition's log (the queue is healed).",
    registry=REGISTRY,
)
MESSAGES_SET_ASIDE: Final = Counter(
    "jobline_relay_messages_set_aside_total",
    "Outbox messages the broker refuses for good (e.g. too large), moved to outbox_set_aside "
    "so that the rest flows, by reason.",
    ["reason"],
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
HELD_UNDECLARED: Final = Counter(
    "jobline_relay_held_undeclared_rows",
    "Outbox rows not published because their work message names an undeclared queue; "
    "they wait in the outbox (relay_undeclared_hold_seconds) until it is declared.",
    registry=REGISTRY,
)
JOBS_HELD: Final = Gauge(
    "jobline_jobs_waiting_on_limit",
    "Jobs held by a full concurrency or rate limit, by limit (kind:job type).",
    ["limit"],
    registry=REGISTRY,
)
LIMIT_RELEASES: Final = Counter(
    "jobline_limit_releases",
    "Held jobs released as their limit's gate freed, by limit (kind:job type).",
    ["limit"],
    registry=REGISTRY,
)
_held_labels: set[str] = set()
PARKED: Final = Counter(
    "jobline_relay_parked_messages",
    "Work messages held back because their tenant had a window's worth waiting in the "
    "queue (tenant fairness).",
    registry=REGISTRY,
)
UNPARKED: Final = Counter(
    "jobline_relay_unparked_messages",
    "Parked work messages published as their tenant's jobs started.",
    registry=REGISTRY,
)
PARKED_NOW: Final = Gauge(
    "jobline_work_parked",
    "Work messages parked now for tenant fairness, by queue (as of the relay's last count).",
    ["queue"],
    registry=REGISTRY,
)
_parked_queues: set[str] = set()


def set_parked(parked: dict[tuple[str, str], int]) -> None:
    """Parked messages per queue (summed over tenants: tenants are not a label)."""
    by_queue: dict[str, int] = {}
    for (queue, _tenant), n in parked.items():
        by_queue[queue] = by_queue.get(queue, 0) + n
    for queue in _parked_queues - by_queue.keys():
        PARKED_NOW.labels(queue).set(0)
    for queue, n in by_queue.items():
        PARKED_NOW.labels(queue).set(n)
    _parked_queues.clear()
    _parked_queues.update(by_queue)


def set_held(counts: dict[str, int]) -> None:
    """The held jobs per limit now; a limit that no longer holds any goes back to 0."""
    for label in _held_labels - counts.keys():
        JOBS_HELD.labels(label).set(0)
    for label, count in counts.items():
        JOBS_HELD.labels(label).set(count)
    _held_labels.clear()
    _held_labels.update(counts)


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


# --- the scheduler (scheduler.py). Labelled by misfire policy only: a tenant or schedule
# label would grow without bound.
FIRE_LAG_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip

SCHEDULE_FIRES: Final = Counter(
    "jobline_schedule_fires",
    "Jobs created by recurring schedules (one per fired planned time), by misfire policy.",
    ["misfire_policy"],
    registry=REGISTRY,
)
SCHEDULE_MISFIRES: Final = Counter(
    "jobline_schedule_misfires",
    "Planned fire times found late (relays down or behind), by the misfire policy that "
    "decided what became of them.",
    ["misfire_policy"],
    registry=REGISTRY,
)
SCHEDULE_FIRE_LAG: Final = Histogram(
    "jobline_schedule_fire_lag_seconds",
    "Firing lag: when the job was created minus its planned fire time.",
    buckets=FIRE_LAG_BUCKETS,
    registry=REGISTRY,
)
SCHEDULE_OVERLAP_SKIPS: Final = Counter(
    "jobline_schedule_overlap_skips",
    "Planned fire times not fired because the previous job still ran (skip_if_running).",
    registry=REGISTRY,
)
SCHEDULE_DUPLICATES: Final = Counter(
    "jobline_schedule_duplicate_fires",
    "Fire times that already had their job (absorbed by UNIQUE (schedule_id, fire_time)).",
    registry=REGISTRY,
)
SCHEDULE_ERRORS: Final = Counter(
    "jobline_schedule_errors",
    "Schedules whose firing failed in a round (rolled back alone, retried next round).",
    registry=REGISTRY,
)


# --- webhooks (jobline_relay/webhooks). No endpoint or tenant label: they grow without bound.
WEBHOOK_FANNED_OUT: Final = Counter(
    "jobline_webhook_deliveries_created",
    "Webhook deliveries created from lifecycle events (one per matching endpoint; an event "
    "consumed again counts again but creates nothing).",
    registry=REGISTRY,
)
WEBHOOK_ATTEMPTS: Final = Counter(
    "jobline_webhook_attempts",
    "Webhook delivery attempts (HTTP POSTs), by result: success (2xx), http_error (any other "
    "status), network_error (connect, TLS, timeout), refused (address policy).",
    ["result"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES: Final = Counter(
    "jobline_webhook_deliveries_finished",
    "Webhook deliveries finished, by outcome: succeeded (sent), failed (every attempt failed).",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_ENDPOINTS_DISABLED: Final = Counter(
    "jobline_webhook_endpoints_disabled",
    "Webhook endpoints disabled automatically after repeated failed deliveries.",
    registry=REGISTRY,
)
WEBHOOK_LATENCY: Final = Histogram(
    "jobline_webhook_attempt_seconds",
    "One webhook attempt: resolving, connecting and the receiver's answer.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
