"""Flow control: a tenant's own limits of a job type, and parked work messages (fairness).

- ``job_type_limits``: ``PUT /v1/job-types/{type}/limits``, a tenant's concurrency and rate
  limits of a type, replacing what the worker's handler declares for that tenant's jobs.
- ``outbox_parked``: work messages the relay holds back while their tenant already has a
  window's worth waiting in the queue's topics (jobline.core.fairness), published best first
  as that tenant's jobs start.
- ``ix_jobs_queued_queue_tenant``: one queue's queued jobs per tenant, which the relay counts
  while that queue has work parked (partial: only queued jobs are in it).

Expand-only: two new tables the previous release neither reads nor writes, and a partial
index built with a plain CREATE INDEX (see 0012 for why not CONCURRENTLY): it scans ``jobs``
once under a SHARE lock, and holds only the queued jobs.

Written by hand to match ``jobline.pg.tables`` (the migration test compares the two).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "job_type_limits",
        sa.Column(
            "tenant_id",
            sa.Text(),
            sa.ForeignKey(
                "tenants.id", ondelete="CASCADE", name=op.f("fk_job_type_limits_tenant_id_tenants")
            ),
            nullable=False,
        ),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("concurrency", sa.Integer()),
        sa.Column("concurrency_key", sa.Text()),
        sa.Column("rate_limit", sa.Text()),
        sa.Column("rate_key", sa.Text()),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "type", name=op.f("pk_job_type_limits")),
        sa.CheckConstraint(
            "concurrency IS NULL OR concurrency >= 1",
            name=op.f("ck_job_type_limits_concurrency_positive"),
        ),
    )
    op.create_table(
        "outbox_parked",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("key", sa.Text()),
        sa.Column("parked_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_parked")),
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_queued_queue_tenant ON jobs (queue, tenant_id)"
        " WHERE state = 'queued'"
    )
    op.create_index(
        "ix_outbox_parked_release",
        "outbox_parked",
        ["queue", "tenant_id", sa.text("priority DESC"), "id"],
    )
    op.create_index("ix_outbox_parked_job_id", "outbox_parked", ["job_id"])


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_jobs_queued_queue_tenant")
    op.drop_table("outbox_parked")
    op.drop_table("job_type_limits")
