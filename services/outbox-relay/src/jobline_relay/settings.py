"""Settings of the outbox relay (env prefix `JOBLINE_`)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from jobline.core.retention import BatchLimits
from jobline.core.webhooks.retry import RetryPolicy
from jobline.settings import (
    DatabaseSettings,
    HttpSettings,
    JobDefaultsSettings,
    KafkaSettings,
    RuntimeSettings,
    WebhookAddressSettings,
)


class Settings(
    RuntimeSettings,
    DatabaseSettings,
    KafkaSettings,
    HttpSettings,
    JobDefaultsSettings,
    WebhookAddressSettings,
):
    """Everything the outbox relay reads from the environment, validated at start."""

    relay_port: Annotated[int, Field(ge=1, le=65535)] = 8002
    # Rows claimed (and published) per transaction; a full batch means "drain on, no wait".
    relay_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    # The fallback when no NOTIFY arrives (listen connection down, or a NOTIFY lost):
    # the longest an idle relay waits before claiming again.
    relay_poll_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    # Rows of lifecycle events only (a worker's "started", "succeeded") wake no relay: a
    # NOTIFY serialises commits (migration 0004). For event_poll_window seconds after a batch
    # with rows the relay looks again every event_poll; after that, every poll interval.
    relay_event_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.02
    relay_event_poll_window_seconds: Annotated[float, Field(ge=0, le=3600)] = 2.0
    # The producer's linger: how long aiokafka waits to fill a request. The relay hands it a
    # whole batch before yielding, so the batch fills a request anyway; any linger is pure
    # added latency for the submit-to-start path.
    relay_linger_ms: Annotated[int, Field(ge=0, le=1000)] = 0
    # A row whose work message names an undeclared queue is not published (no topic is made
    # for it): it goes back into the outbox and is looked at again after this long.
    relay_undeclared_hold_seconds: Annotated[float, Field(gt=0, le=86400)] = 30.0
    # How long the relay trusts its copy of the declared queues' partition counts (a name it
    # does not know is looked up at once).
    relay_declared_queues_ttl_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # A batch whose acks have not all arrived by then is rolled back and retried.
    relay_publish_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Backoff between failed batches (broker or database down): exponential, capped.
    relay_retry_base_seconds: Annotated[float, Field(gt=0, le=60)] = 0.2
    relay_retry_max_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    # How often the lease rescuer looks for running jobs whose lease ran out.
    lease_rescue_interval_seconds: Annotated[float, Field(gt=0, le=600)] = 1.0
    lease_rescue_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    # How often jobs held by a full concurrency or rate limit are checked for release
    # (jobline_relay/gates.py): a held job waits about this long after its gate frees.
    limit_release_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 0.1
    # Tenant fairness (jobline.core.fairness): at most this many work messages of one tenant
    # wait in a queue's topics; the rest are parked in PostgreSQL and released as its jobs
    # start, checked every fair_interval. Another tenant's job waits behind at most one
    # window of each busy tenant's work. 0 turns it off (everything is published at once).
    relay_fair_window: Annotated[int, Field(ge=0, le=10_000_000)] = 2000
    relay_fair_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 0.1
    # Healing (jobline_relay/healer.py): a queued job whose work message went to the broker
    # heal_after seconds ago and that no worker has claimed gets its message again (then after
    # 2x, 4x ... 64x that), at most heal_batch_size per transaction, checked every
    # heal_interval. A work topic the relay has to create again heals its queue at once.
    relay_heal_after_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    relay_heal_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    relay_heal_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    # The largest message the relay hands the producer (aiokafka's max_request_size is set to
    # match); a row with a larger one is set aside (outbox_set_aside) and its job dead-lettered
    # if it was a work message. Keep it at or below the broker's message.max.bytes.
    relay_max_message_bytes: Annotated[int, Field(ge=1024, le=100 * 1024 * 1024)] = 1_000_000
    # How often the backlog gauges (rows due, oldest due age) are refreshed.
    relay_backlog_refresh_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0
    # On shutdown, how long the current batch may take before it is cancelled (rolled back).
    relay_shutdown_grace_seconds: Annotated[float, Field(gt=0, le=600)] = 15.0
    # The scheduler (recurring schedules): whether this replica fires them, how many it claims
    # per transaction, and the longest it sleeps between rounds (it wakes earlier for the next
    # due schedule; this bounds how late a newly created or resumed one is first seen).
    scheduler_enabled: bool = True
    scheduler_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    scheduler_poll_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    # Retention (jobline_relay.retention): finished jobs with their attempts once their
    # purge_after passed (stamped from job_retention_seconds when they finish) and expired
    # Idempotency-Keys (the gateway's idempotency_retention_seconds) are deleted in batches.
    # How often a round starts; the batch size adapts between min and max so one batch's
    # transaction stays near the target; a round stops after its budget per table and goes on
    # at the next one; the pause between batches lets other writers and vacuum in.
    retention_enabled: bool = True
    retention_interval_seconds: Annotated[float, Field(gt=0, le=86400)] = 30.0
    retention_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    retention_batch_min: Annotated[int, Field(ge=1, le=10_000)] = 10
    retention_batch_max: Annotated[int, Field(ge=1, le=50_000)] = 5000
    retention_batch_target_seconds: Annotated[float, Field(gt=0, le=60)] = 0.25
    retention_round_budget_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    retention_pause_seconds: Annotated[float, Field(ge=0, le=60)] = 0.05
    # Webhooks (jobline_relay/webhooks): the fan-out consumes the events topic in its own
    # group (<prefix>.webhooks); the delivery loop claims up to webhook_batch_size due
    # deliveries at a time and POSTs at most webhook_concurrency at once, each within
    # webhook_timeout_seconds. A delivery is tried webhook_max_attempts times, waiting
    # base*2^(n-1) seconds (capped at max, with jitter) between tries; an endpoint whose
    # webhook_disable_after deliveries in a row failed for good is disabled. Finished
    # deliveries are purged after webhook_delivery_retention_seconds.
    webhooks_enabled: bool = True
    webhook_batch_size: Annotated[int, Field(ge=1, le=1000)] = 50
    webhook_concurrency: Annotated[int, Field(ge=1, le=1000)] = 20
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    webhook_max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    webhook_retry_base_seconds: Annotated[float, Field(gt=0, le=86400)] = 5.0
    webhook_retry_max_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600.0
    webhook_disable_after: Annotated[int, Field(ge=1, le=10_000)] = 10
    webhook_poll_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    webhook_delivery_retention_seconds: Annotated[float, Field(gt=0)] = 7 * 86400.0
    # The fan-out consumer against the embedded broker (jobline dev sets them short; see
    # ARCHITECTURE.md on Tansu's fetch wait and group joins).
    webhook_fetch_max_wait_ms: Annotated[int, Field(ge=1, le=10_000)] = 500
    webhook_kafka_session_timeout_ms: Annotated[int, Field(ge=500, le=300_000)] = 10_000
    webhook_kafka_heartbeat_interval_ms: Annotated[int, Field(ge=100, le=60_000)] = 3_000

    @model_validator(mode="after")
    def _retention_bounds(self) -> Self:
        if not self.retention_batch_min <= self.retention_batch_size <= self.retention_batch_max:
            raise ValueError(
                "retention_batch_size must lie between retention_batch_min and retention_batch_max"
            )
        return self

    @model_validator(mode="after")
    def _webhook_bounds(self) -> Self:
        if self.webhook_retry_max_seconds < self.webhook_retry_base_seconds:
            raise ValueError("webhook_retry_max_seconds must be >= webhook_retry_base_seconds")
        return self

    @property
    def webhook_retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.webhook_max_attempts,
            base_seconds=self.webhook_retry_base_seconds,
            max_seconds=self.webhook_retry_max_seconds,
            disable_after=self.webhook_disable_after,
        )

    @property
    def retention_limits(self) -> BatchLimits:
        return BatchLimits(
            initial=self.retention_batch_size,
            minimum=self.retention_batch_min,
            maximum=self.retention_batch_max,
            target_seconds=self.retention_batch_target_seconds,
        )
