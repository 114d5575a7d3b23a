"""Settings of the worker (env prefix `JOBLINE_`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from jobline.settings import (
    DatabaseSettings,
    HttpSettings,
    JobDefaultsSettings,
    KafkaSettings,
    RuntimeSettings,
)


class Settings(RuntimeSettings, DatabaseSettings, KafkaSettings, HttpSettings, JobDefaultsSettings):
    """Everything the worker reads from the environment, validated at start."""

    worker_port: Annotated[int, Field(ge=1, le=65535)] = 8003
    # `--app` / `--queues` / `--concurrency` on the command line override these three.
    worker_app: str | None = None
    worker_queues: str | None = None  # default: the queues the app's handlers use
    worker_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    # A unique id per process by default (host:pid:random); it is the lease owner.
    worker_id: str | None = None
    # The lease a claim takes; renewed every third of it while the handler runs, so a
    # crashed worker's jobs are re-queued by the relay about this long after the crash.
    worker_lease_seconds: Annotated[float, Field(gt=0.1, le=3600)] = 30.0
    # SIGTERM: how long in-flight handlers may finish before they are handed back.
    worker_shutdown_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 20.0
    # A handler's JSON result larger than this fails the attempt (non-retryable).
    worker_result_max_bytes: Annotated[int, Field(ge=16, le=16 * 1024 * 1024)] = 64 * 1024
    # A handler's error message is kept (in the job, its events and its dead letter) up to
    # this many bytes; the rest is cut, and the cut marked.
    worker_error_max_bytes: Annotated[int, Field(ge=64, le=16 * 1024 * 1024)] = 8 * 1024
    # How often decided offsets are committed (they are also committed on rebalance/stop).
    worker_commit_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    # How long a fetch waits for data. Real Kafka answers a waiting fetch as soon as data
    # arrives, so a long wait costs nothing; the embedded broker (Tansu) answers only when the
    # wait ends, so delivery is delayed by it: `jobline dev` and the tests set 5 ms for it.
    worker_fetch_max_wait_ms: Annotated[int, Field(ge=1, le=60_000)] = 500
    # How often tenants' own limits of the worker's job types are read again
    # (PUT /v1/job-types/{type}/limits takes effect within about this long).
    worker_limits_refresh_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    # Consumer group timing. Kafka's defaults unless set; tests shorten them because the
    # embedded broker ignores LeaveGroup, so a replacement waits out the old member's session.
    worker_kafka_session_timeout_ms: Annotated[int, Field(ge=500)] | None = None
    worker_kafka_heartbeat_interval_ms: Annotated[int, Field(ge=50)] | None = None

    def consumer_options(self) -> dict[str, Any]:
        """Overrides for the work consumers (only what is set)."""
        options: dict[str, Any] = {}
        if self.worker_kafka_session_timeout_ms is not None:
            options["session_timeout_ms"] = self.worker_kafka_session_timeout_ms
        if self.worker_kafka_heartbeat_interval_ms is not None:
            options["heartbeat_interval_ms"] = self.worker_kafka_heartbeat_interval_ms
        return options
