"""Settings of the gateway (env prefix `JOBLINE_`)."""

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
    """Everything the gateway reads from the environment, validated at start.

    Job defaults (``JOBLINE_JOB_DEFAULT_*``) come from :class:`JobDefaultsSettings`, shared
    with the relay, which creates jobs for schedules.
    """

    gateway_port: Annotated[int, Field(ge=1, le=65535)] = 8000

    # Requests: bodies over this many bytes get 413 (by Content-Length and by bytes read).
    gateway_body_limit_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 256 * 1024
    # Per API key token bucket: sustained requests per second and the burst on top.
    gateway_rate_limit_per_second: Annotated[float, Field(gt=0, le=1_000_000)] = 100.0
    gateway_rate_limit_burst: Annotated[int, Field(ge=1, le=10_000_000)] = 200
    # GET /v1/jobs: the page size when the client names none, and the most it may ask for
    # (the cap wins over both the client's limit and the default).
    gateway_page_size_default: Annotated[int, Field(ge=1, le=10_000)] = 50
    gateway_page_size_max: Annotated[int, Field(ge=1, le=10_000)] = 200
    # How long an Idempotency-Key is remembered; after that the key may be reused.
    idempotency_retention_seconds: Annotated[float, Field(gt=0, le=30 * 86400)] = 86400.0
    # How often expired idempotency keys are purged (the overwrite on reuse covers the rest).
    idempotency_purge_interval_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0
