"""Tenant quotas, the shared submission bucket and the audit log.

- ``tenant_quotas``: the operator's per-tenant overrides of the quota defaults in settings
  (NULL: the default).
- ``tenant_rate_buckets``: one token bucket per tenant, shared by every gateway; each leases
  blocks of tokens from it, so the limit holds across replicas without a round trip per
  submission.
- ``audit_log``: key, quota, policy, cancel and redrive actions (who, what, target, when,
  from where), keyset-paginated newest first.

Written by hand to match ``jobline.pg.tables`` (the migration test compares the two).
Expand only: three new tables that writers of the previous version never touch.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def _tenant_key(table: str) -> sa.Column[object]:
    return sa.Column(
        "tenant_id",
        sa.Text(),
        sa.ForeignKey("tenants.id", ondelete="CASCADE", name=op.f(f"fk_{table}_tenant_id_tenants")),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "tenant_quotas",
        _tenant_key("tenant_quotas"),
        sa.Column("max_schedules", sa.Integer(), nullable=True),
        sa.Column("min_schedule_interval_seconds", sa.Integer(), nullable=True),
        sa.Column("max_unfinished_jobs", sa.Integer(), nullable=True),
        sa.Column("submissions_per_second", sa.Double(), nullable=True),
        sa.Column("submission_burst", sa.Integer(), nullable=True),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_quotas")),
        sa.CheckConstraint(
            "(max_schedules IS NULL OR max_schedules > 0)"
            " AND (min_schedule_interval_seconds IS NULL OR min_schedule_interval_seconds > 0)"
            " AND (max_unfinished_jobs IS NULL OR max_unfinished_jobs > 0)"
            " AND (submissions_per_second IS NULL OR submissions_per_second > 0)"
            " AND (submission_burst IS NULL OR submission_burst > 0)",
            name=op.f("ck_tenant_quotas_positive"),
        ),
    )
    op.create_table(
        "tenant_rate_buckets",
        _tenant_key("tenant_rate_buckets"),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_rate_buckets")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("at", TZ, nullable=False, server_default=NOW),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("tenant_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("detail", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at_id", "audit_log", [sa.text("at DESC"), sa.text("id DESC")])
    op.create_index(
        "ix_audit_log_tenant_at_id",
        "audit_log",
        ["tenant_id", sa.text("at DESC"), sa.text("id DESC")],
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("tenant_rate_buckets")
    op.drop_table("tenant_quotas")
