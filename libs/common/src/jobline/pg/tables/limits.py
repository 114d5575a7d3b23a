"""Tenant quotas and the shared submission bucket (migration 0006); the gates of job
concurrency and rate limits and a rate gate's starts (migration 0014)."""

from __future__ import annotations

from typing import Final

from sqlalchemy import CheckConstraint, Column, DateTime, Double, Index, Integer, Table, Text, text

from jobline.pg.tables.conventions import metadata, one_of, tenant_fk, updated_at

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
