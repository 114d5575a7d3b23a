"""Unique jobs: ``jobs.unique_key`` and the partial unique index that enforces it.

At most one unfinished job (scheduled, queued, running, retrying) per (tenant, unique key):
``uq_jobs_unique_key`` is the guarantee, so no path (concurrent submissions, a redrive, a
future writer) can break it; the gateway's key locks only turn would-be violations into
clean answers (jobline.core.unique). A finished job leaves the index, which frees its key.

Partial on ``unique_key IS NOT NULL``: jobs without a key (nearly all) add no entry, so their
inserts and updates cost what they did. Its predicate reads ``state``, which keeps updates of
``state`` from being HOT; they were not before either (``ix_jobs_tenant_state_created`` and
the partial indexes on state hold that column already).

Plain CREATE INDEX, not CONCURRENTLY: every migration runs in one transaction under the
migration advisory lock (migrations/env.py), and CREATE INDEX CONCURRENTLY cannot run in a
transaction block (alembic's ``autocommit_block`` would commit early and drop that lock).
The build holds a SHARE lock on ``jobs`` while it scans the table once: submissions and
transitions wait for that scan (seconds on a table of millions of rows; the column is new, so
the index itself is empty). Schedule the upgrade for a quiet minute on a large table, or
add the column and build the index by hand first (docs/operations.md, "Upgrading without
downtime"): the ``IF NOT EXISTS`` clauses below then keep them.

Expand-only: a nullable column with no default (a catalog change, no table rewrite) and an
index that only rows with a key enter; the previous release neither reads nor writes them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = "('scheduled', 'queued', 'running', 'retrying')"


def upgrade() -> None:
    # IF NOT EXISTS: an operator may have added both by hand first (docs/operations.md).
    op.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS unique_key text")
    op.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS uq_jobs_unique_key ON jobs (tenant_id, unique_key)"
        f" WHERE unique_key IS NOT NULL AND state IN {UNFINISHED}"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS uq_jobs_unique_key")
    op.drop_column("jobs", "unique_key")
