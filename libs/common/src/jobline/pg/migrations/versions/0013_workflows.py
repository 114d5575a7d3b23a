"""Workflows: ``workflows``, ``job_dependencies``, and three nullable columns on ``jobs``.

- ``workflows``: one row per submitted graph (state, failure policy, node counters).
- ``job_dependencies``: one row per edge, ``outcome`` set once when the parent ends.
- ``jobs.workflow_id`` / ``workflow_ref`` / ``pending_parents``: a node's workflow, its ref,
  and the fan-in counter; ``ix_jobs_workflow_id`` (partial: only nodes are in it).

Expand-only: new tables the previous release never touches, and nullable columns with no
default on ``jobs`` (a catalog change, no table rewrite); the previous release neither reads
nor writes them. The partial index is built with a plain CREATE INDEX (see 0012 for why not
CONCURRENTLY): the column is new, so its entries are none, but the build scans ``jobs`` once
under a SHARE lock.

Written by hand to match ``jobline.pg.tables`` (the migration test compares the two).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS workflow_id uuid")
    op.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS workflow_ref text")
    op.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS pending_parents integer")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_workflow_id ON jobs (workflow_id)"
        " WHERE workflow_id IS NOT NULL"
    )
    op.create_table(
        "workflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "tenant_id",
            sa.Text(),
            sa.ForeignKey(
                "tenants.id", ondelete="CASCADE", name=op.f("fk_workflows_tenant_id_tenants")
            ),
            nullable=False,
        ),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("on_failure", sa.Text(), nullable=False),
        sa.Column("metadata", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("unfinished", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("sequence", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.Column("finished_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
        sa.CheckConstraint(
            "state IN ('running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_workflows_state"),
        ),
        sa.CheckConstraint(
            "on_failure IN ('cancel', 'continue')", name=op.f("ck_workflows_on_failure")
        ),
        sa.CheckConstraint(
            "unfinished >= 0 AND failed >= 0", name=op.f("ck_workflows_counters_nonnegative")
        ),
    )
    op.create_index(
        "ix_workflows_tenant_created",
        "workflows",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_workflows_finished_at",
        "workflows",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    op.create_table(
        "job_dependencies",
        sa.Column(
            "parent_id",
            sa.Uuid(),
            sa.ForeignKey(
                "jobs.id", ondelete="CASCADE", name=op.f("fk_job_dependencies_parent_id_jobs")
            ),
            nullable=False,
        ),
        sa.Column(
            "child_id",
            sa.Uuid(),
            sa.ForeignKey(
                "jobs.id", ondelete="CASCADE", name=op.f("fk_job_dependencies_child_id_jobs")
            ),
            nullable=False,
        ),
        sa.Column("parent_ref", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("parent_id", "child_id", name=op.f("pk_job_dependencies")),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('succeeded', 'dead', 'cancelled')",
            name=op.f("ck_job_dependencies_outcome"),
        ),
    )
    op.create_index("ix_job_dependencies_child_id", "job_dependencies", ["child_id"])


def downgrade() -> None:
    op.drop_table("job_dependencies")
    op.drop_table("workflows")
    op.execute("DROP INDEX IF EXISTS ix_jobs_workflow_id")
    op.drop_column("jobs", "pending_parents")
    op.drop_column("jobs", "workflow_ref")
    op.drop_column("jobs", "workflow_id")
