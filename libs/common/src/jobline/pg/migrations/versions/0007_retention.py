"""Indexes for the analyzer's retention purge (jobline_analyzer.retention).

Each purge batch picks the oldest due rows of a table through an index on its age column, so
it reads about a batch of rows however large the table. Jobs (``ix_jobs_purge_after``),
job attempts (their primary key, from the purged jobs), idempotency keys
(``ix_idempotency_keys_expires_at``), seen events and rollups already had theirs; these three
did not:

- ``ix_analyzer_error_rollups_bucket``: error counts by minute (its primary key starts with
  the tenant).
- ``ix_analyzer_jobs_updated_at``: per-job rows (the existing index starts with the tenant).
- ``ix_analyzer_findings_published_created``: published findings by age; partial, the
  complement of ``ix_analyzer_findings_unpublished`` (unpublished findings are never purged).

Plain CREATE INDEX, like every migration before it: the migration runs in one transaction
under the migration advisory lock, which CONCURRENTLY cannot join. The build blocks writes to
these analyzer tables only (never the job path); the analyzer's ingest waits meanwhile, its
events kept by the broker.

Expand only: indexes, nothing the previous release reads or writes changes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_analyzer_error_rollups_bucket", "analyzer_error_rollups", ["bucket"])
    op.create_index("ix_analyzer_jobs_updated_at", "analyzer_jobs", ["updated_at"])
    op.create_index(
        "ix_analyzer_findings_published_created",
        "analyzer_findings",
        ["created_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_analyzer_findings_published_created", table_name="analyzer_findings")
    op.drop_index("ix_analyzer_jobs_updated_at", table_name="analyzer_jobs")
    op.drop_index("ix_analyzer_error_rollups_bucket", table_name="analyzer_error_rollups")
