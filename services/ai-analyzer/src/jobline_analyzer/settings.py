"""Settings of the AI analyzer (env prefix `JOBLINE_`)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from jobline.settings import DatabaseSettings, HttpSettings, KafkaSettings, RuntimeSettings


class Settings(RuntimeSettings, DatabaseSettings, KafkaSettings, HttpSettings):
    """Everything the AI analyzer reads from the environment, validated at start."""

    analyzer_port: Annotated[int, Field(ge=1, le=65535)] = 8001
    # Consumer group of the analyzer's ingest (its own: it reads every lifecycle event).
    analyzer_group: Annotated[str, Field(min_length=1)] = "jobline-analyzer"
    # Run the ingest and detection loops in the lifespan (off: API only).
    analyzer_background: bool = True
    # Rollup bucket width. The detectors think in minutes; a shorter bucket (tests, demos)
    # runs them on a compressed clock where one bucket counts as one minute.
    analyzer_bucket_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    # How often the detection loop feeds closed buckets to the detectors.
    analyzer_detect_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # A bucket is closed this long after it ends, so events the relay publishes late still
    # count before the detectors see it.
    analyzer_close_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    # Records per ingest transaction, and how long a poll waits for them.
    analyzer_batch_size: Annotated[int, Field(ge=1, le=10000)] = 500
    analyzer_poll_timeout_ms: Annotated[int, Field(ge=1, le=60000)] = 500
    # Retention (jobline_analyzer.retention): rows older than these are purged in batches.
    # Seen event ids: a duplicate arriving later than this would count twice.
    analyzer_seen_retention_days: Annotated[float, Field(gt=0)] = 30.0
    # Per-minute rollups and error counts (the detectors keep their own state; these feed
    # new series and catch-up after downtime).
    analyzer_rollup_retention_days: Annotated[float, Field(gt=0)] = 30.0
    # Per-job rows and their attempts (the recommendations' history, analyzer_history_days).
    analyzer_job_retention_days: Annotated[float, Field(gt=0)] = 14.0
    # Published findings (GET /v1/insights/anomalies); unpublished ones wait for the publisher.
    analyzer_finding_retention_days: Annotated[float, Field(gt=0)] = 90.0
    # A series' detector checkpoint, once the series has had no rollup for this long.
    analyzer_idle_series_retention_days: Annotated[float, Field(gt=0)] = 30.0
    analyzer_retention_interval_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0
    analyzer_retention_batch_size: Annotated[int, Field(ge=10, le=10_000)] = 1000
    # A new series starts at its earliest rollup within this window.
    analyzer_new_series_lookback_hours: Annotated[float, Field(gt=0)] = 24.0
    # At most this many buckets per series per tick (catching up after downtime).
    analyzer_max_buckets_per_tick: Annotated[int, Field(ge=1)] = 10080
    # Recommendations read this much job history, at most this many jobs per type.
    analyzer_history_days: Annotated[float, Field(gt=0)] = 7.0
    analyzer_history_jobs: Annotated[int, Field(ge=10)] = 20000
    # API limits (per process): per API key, and per client address before authentication
    # (before the key lookup takes a database connection). Reads here are heavy (the
    # recommendations read a week of history), hence far below the gateway's.
    analyzer_rate_limit_per_second: Annotated[float, Field(gt=0, le=100_000)] = 10.0
    analyzer_rate_limit_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    analyzer_address_rate_per_second: Annotated[float, Field(gt=0, le=100_000)] = 50.0
    analyzer_address_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 100

    @model_validator(mode="after")
    def _retention_covers_what_is_read(self) -> Self:
        if self.analyzer_job_retention_days < self.analyzer_history_days:
            raise ValueError(
                "analyzer_job_retention_days must be >= analyzer_history_days (the history "
                "recommendations read)"
            )
        if self.analyzer_rollup_retention_days * 24 < self.analyzer_new_series_lookback_hours:
            raise ValueError(
                "analyzer_rollup_retention_days must cover analyzer_new_series_lookback_hours"
            )
        return self
