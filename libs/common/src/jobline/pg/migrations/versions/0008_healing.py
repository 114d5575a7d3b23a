"""Healing from broker data loss, and outbox rows that cannot be published set aside.

``jobs.heals`` and ``jobs.healed_at``: the relay publishes a queued job's work message again
when it has waited too long (its message may be gone from the broker: a broker that restarted
empty, a re-created topic, an unclean leader election); ``heals`` spaces the re-publications
of one job out exponentially, ``healed_at`` says when the last went out. The partial index
``ix_jobs_queued_since`` is the healer's scan: only queued jobs are in it.

``outbox_set_aside``: a row the broker refuses for good (a message over its size limit) is
moved here with the reason, so that the rows behind it flow.

Expand only: new nullable or defaulted columns (catalog-only changes), a new index and a new
table; writers of the previous version are unaffected.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("heals", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("jobs", sa.Column("healed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_jobs_queued_since",
        "jobs",
        ["updated_at"],
        postgresql_where=sa.text("state = 'queued'"),
    )
    op.create_table(
        "outbox_set_aside",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("topics", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("payloads", postgresql.ARRAY(sa.LargeBinary()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "set_aside_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_set_aside")),
    )


def downgrade() -> None:
    op.drop_table("outbox_set_aside")
    op.drop_index("ix_jobs_queued_since", table_name="jobs")
    op.drop_column("jobs", "healed_at")
    op.drop_column("jobs", "heals")
