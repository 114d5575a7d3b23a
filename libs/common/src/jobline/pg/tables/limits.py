"""Tenant quotas and the shared submission bucket (migration 0006); the gates of job
concurrency and rate limits and a rate gate's starts (migration 0014); a tenant's own limits
of a job type, and the work messages the relay parks for tenant fairness (migration 0015)."""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    Uuid,
    text,
)

from jobline.pg.tables.conventions import metadata, now, one_of, tenant_fk, updated_at

# The operator's per-tenant overrides; a NULL column means "the default from settings".
tenant_quotas: Final = Table(
    "tenant_quotas",
    metadata,
    Column("tenant_id", Text, tenant_fk(), primary_key=True),
    Column("max_schedules", Integer),
    Column("min_schedule_interval_seconds", Integer),
    Column("max_unfinished_jobs", Integer),
    Column("submissions_per_second", Double),
    Column("submission_burst", Integer),
    updated_at(),
    CheckConstraint(
        "(max_schedules IS NULL OR max_schedules > 0)"
        " AND (min_schedule_interval_seconds IS NULL OR min_schedule_interval_seconds > 0)"
        " AND (max_unfinished_jobs IS NULL OR max_unfinished_jobs > 0)"
        " AND (submissions_per_second IS NULL OR submissions_per_second > 0)"
        " AND (submission_burst IS NULL OR submission_burst > 0)",
        name="positive",
    ),
)

# One token bucket per tenant, shared by every gateway: each leases blocks of tokens from it
# (jobline.core.tokens). Kept apart from tenant_quotas because it is updated a few times a
# second per busy tenant; no column of it is indexed beyond the key, so the updates are HOT.
tenant_rate_buckets: Final = Table(
    "tenant_rate_buckets",
    metadata,
    Column("tenant_id", Text, tenant_fk(), primary_key=True),
    Column("tokens", Double, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# Each gate's limit as the worker that held a job there declared it (jobline.core.limits).
limit_gates: Final = Table(
    "limit_gates",
    metadata,
    Column("gate", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("max", Integer, nullable=False),
    Column("period_seconds", Double, nullable=False, server_default=text("0")),
    updated_at(),
    CheckConstraint(one_of("kind", ("concurrency", "rate")), name="kind"),
    CheckConstraint("max >= 1", name="max_positive"),
)

# Each start through a rate gate: the sliding window counts those after now - period.
rate_starts: Final = Table(
    "rate_starts",
    metadata,
    Column("gate", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Index("ix_rate_starts_gate_started", "gate", "started_at"),
)


# A tenant's own concurrency and rate limits of a job type (PUT /v1/job-types/{type}/limits):
# they replace the limits the worker's handler declares for that tenant's jobs, except one
# shared by every tenant (key "*"), which a tenant cannot lift (jobline.core.limits).
job_type_limits: Final = Table(
    "job_type_limits",
    metadata,
    Column("tenant_id", Text, tenant_fk(), nullable=False),
    Column("type", Text, nullable=False),
    Column("concurrency", Integer),
    Column("concurrency_key", Text),
    Column("rate_limit", Text),
    Column("rate_key", Text),
    updated_at(),
    PrimaryKeyConstraint("tenant_id", "type"),
    CheckConstraint("concurrency IS NULL OR concurrency >= 1", name="concurrency_positive"),
)

# Work messages the relay did not publish yet because their tenant already has a window's
# worth of work waiting in the queue's topics (jobline.core.fairness): published, best first,
# as that tenant's jobs start. No foreign key: the hot path checks
# nothing, and a job purged meanwhile only makes its message stale.
outbox_parked: Final = Table(
    "outbox_parked",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("job_id", Uuid, nullable=False),
    Column("queue", Text, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("key", Text),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=now()),
    # The release: one tenant's parked messages of a queue, best first.
    Index("ix_outbox_parked_release", "queue", "tenant_id", text("priority DESC"), "id"),
    # The healer leaves parked jobs alone: is this job's message parked?
    Index("ix_outbox_parked_job_id", "job_id"),
)
