"""One job per schedule fire time, kept by a partial unique index instead of a constraint.

``uq_jobs_schedule_id_fire_time`` was a unique constraint over every job; only jobs of a
schedule need it, so a partial unique index (``WHERE schedule_id IS NOT NULL``) keeps the
same guarantee without an index entry for every other job's row versions. Databases that
ran 0003 as it stood for a while (with this swap in it) already have the index under that
name: the swap then does nothing.

Contract: swaps the constraint for an equivalent index, atomically. No release refers to
the constraint by name or infers it in ``ON CONFLICT``; every release only relies on the
uniqueness (a second job for one fire time fails), which the index keeps. So the release
running while this applies (0008's) is unaffected.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The statement is written out here so the migration-policy test reads what it does.
    op.execute(
        """
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'uq_jobs_schedule_id_fire_time' AND conrelid = 'jobs'::regclass
    ) THEN
        CREATE UNIQUE INDEX uq_jobs_schedule_id_fire_time_partial
            ON jobs (schedule_id, fire_time) WHERE schedule_id IS NOT NULL;
        ALTER TABLE jobs DROP CONSTRAINT uq_jobs_schedule_id_fire_time;
        ALTER INDEX uq_jobs_schedule_id_fire_time_partial
            RENAME TO uq_jobs_schedule_id_fire_time;
    END IF;
END $$
"""
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_schedule_id_fire_time", table_name="jobs")
    op.create_unique_constraint(
        "uq_jobs_schedule_id_fire_time", "jobs", ["schedule_id", "fire_time"]
    )
