"""Concurrency and rate limits (jobline.core.limits): the gate a job waits on or counts in.

- ``jobs.waiting_on``: the gate a held job waits for (``scheduled``, no work message) and,
  after the relay released it, until it starts; ``ix_jobs_waiting_on`` finds a gate's
  waiting jobs and the gates that have any.
- ``jobs.concurrency_key``: the concurrency gate a running job counts in;
  ``ix_jobs_concurrency_running`` holds running jobs with one only, so counting a gate's
  running jobs reads only them.
- ``rate_starts``: each start through a rate gate, for the sliding window (pruned as the
  window moves).
- ``limit_gates``: each gate's limit as the worker that held a job declared it, so the relay
  knows how many to release.

Expand-only: two nullable columns, two partial indexes that only gated jobs enter, two new
tables; the previous release neither reads nor writes them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS waiting_on text")
    op.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS concurrency_key text")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_waiting_on ON jobs (waiting_on, priority, created_at)"
        " WHERE waiting_on IS NOT NULL AND state IN ('scheduled', 'queued')"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_concurrency_running ON jobs (concurrency_key)"
        " WHERE concurrency_key IS NOT NULL AND state = 'running'"
    )
    op.create_table(
        "rate_starts",
        sa.Column("gate", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rate_starts_gate_started", "rate_starts", ["gate", "started_at"])
    op.create_table(
        "limit_gates",
        sa.Column("gate", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("max", sa.Integer(), nullable=False),
        sa.Column("period_seconds", sa.Double(), nullable=False, server_default=sa.text("0")),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("kind IN ('concurrency', 'rate')", name="kind"),
        sa.CheckConstraint("max >= 1", name="max_positive"),
    )


def downgrade() -> None:
    op.drop_table("limit_gates")
    op.drop_table("rate_starts")
    op.execute("DROP INDEX IF EXISTS ix_jobs_concurrency_running")
    op.execute("DROP INDEX IF EXISTS ix_jobs_waiting_on")
    op.drop_column("jobs", "concurrency_key")
    op.drop_column("jobs", "waiting_on")
