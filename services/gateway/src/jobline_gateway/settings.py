"""Settings of the gateway (env prefix `JOBLINE_`)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator

from jobline.core.quotas import Quotas
from jobline.settings import (
    DatabaseSettings,
    Environment,
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
    # Webhooks: endpoints per tenant (one more is a 409), and how long a rotated-out signing
    # secret keeps signing beside the new one (receivers switch within it).
    webhook_max_endpoints: Annotated[int, Field(ge=1, le=10_000)] = 50
    webhook_secret_grace_seconds: Annotated[float, Field(ge=0, le=30 * 86400)] = 86400.0
    # How long an Idempotency-Key is remembered; after that the key may be reused.
    idempotency_retention_seconds: Annotated[float, Field(gt=0, le=30 * 86400)] = 86400.0
    # How often expired idempotency keys are purged (the overwrite on reuse covers the rest).
    idempotency_purge_interval_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0

    # Per client address, before authentication and before any database connection: a
    # token bucket per address in each gateway process (it cannot be shared without a
    # round trip, which is what it must not cost).
    gateway_address_rate_per_second: Annotated[float, Field(gt=0, le=1_000_000)] = 2000.0
    gateway_address_burst: Annotated[int, Field(ge=1, le=10_000_000)] = 4000

    # GET /v1/events/stream. Each open stream reads the events topic with a consumer of its
    # own (every tenant's events, filtered here): this bounds them per gateway process;
    # beyond it a stream is refused with 503 and Retry-After.
    gateway_event_streams_max: Annotated[int, Field(ge=0, le=10_000)] = 100
    # One tenant's share of them (429 with Retry-After beyond), so one cannot take them all.
    gateway_event_streams_per_tenant_max: Annotated[int, Field(ge=0, le=10_000)] = 10
    # A comment line this often keeps an idle stream alive through proxies and client timeouts.
    gateway_event_heartbeat_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    # How long a stream's fetch waits at the broker for new events. The embedded broker
    # answers a waiting fetch only when the wait ends (ARCHITECTURE.md): `jobline dev` sets 100.
    gateway_events_fetch_max_wait_ms: Annotated[int, Field(ge=1, le=10_000)] = 500

    # Tenant quota defaults (an operator's row in tenant_quotas overrides them per tenant).
    quota_max_schedules: Annotated[int, Field(ge=1)] = 1000
    quota_min_schedule_interval_seconds: Annotated[int, Field(ge=1)] = 1
    quota_max_unfinished_jobs: Annotated[int, Field(ge=1)] = 1_000_000
    # Jobs submitted per second by a tenant, shared by every gateway replica.
    quota_submissions_per_second: Annotated[float, Field(gt=0)] = 5000.0
    quota_submission_burst: Annotated[int, Field(ge=1000)] = 10000
    # A gateway leases this many seconds' worth of the tenant's rate at a time (one round
    # trip per block) and may keep unspent tokens this long.
    quota_lease_seconds: Annotated[float, Field(gt=0, le=10)] = 0.1
    quota_lease_ttl_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    # How long a gateway trusts its copy of a tenant's quotas and unfinished-job count.
    quota_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0
    quota_unfinished_refresh_seconds: Annotated[float, Field(ge=0, le=60)] = 1.0

    # The registry (declared queues, registered job types) is kept in memory and dropped on
    # every change heard; this bounds how long a copy is used if a notification is lost.
    gateway_registry_ttl_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # Dev and test only (refused with JOBLINE_ENV=prod): accept job types nobody registered
    # (their payloads unchecked) and declare any queue a submission names, as before the
    # registry existed. Registered types are still checked. For suites and experiments that
    # submit made-up types; never for a deployment tenants can reach.
    gateway_accept_undeclared: bool = False

    # The web console (/ui): its session cookies are signed with this secret. Unset, each
    # process draws a random one: sessions then end when it restarts and do not cross
    # replicas (set the same value on every gateway behind one address).
    console_session_secret: SecretStr | None = None
    console_session_seconds: Annotated[int, Field(ge=60, le=30 * 86400)] = 8 * 3600

    @property
    def quota_defaults(self) -> Quotas:
        return Quotas(
            max_schedules=self.quota_max_schedules,
            min_schedule_interval_seconds=self.quota_min_schedule_interval_seconds,
            max_unfinished_jobs=self.quota_max_unfinished_jobs,
            submissions_per_second=self.quota_submissions_per_second,
            submission_burst=self.quota_submission_burst,
        )

    @model_validator(mode="after")
    def _undeclared_not_in_prod(self) -> Self:
        if self.gateway_accept_undeclared and self.env is Environment.PROD:
            raise ValueError("gateway_accept_undeclared is not allowed with JOBLINE_ENV=prod")
        return self
