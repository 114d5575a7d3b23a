"""Settings of the outbox relay (env prefix `JOBLINE_`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from jobline.settings import (
    DatabaseSettings,
    HttpSettings,
    JobDefaultsSettings,
    KafkaSettings,
    RuntimeSettings,
)


class Settings(RuntimeSettings, DatabaseSettings, KafkaSettings, HttpSettings, JobDefaultsSettings):
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
