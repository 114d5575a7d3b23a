"""Settings of the AI analyzer (env prefix `JOBLINE_`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

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
    # Seen event ids older than this are pruned; a duplicate arriving later would count twice.
    analyzer_seen_retention_days: Annotated[float, Field(gt=0)] = 30.0
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
