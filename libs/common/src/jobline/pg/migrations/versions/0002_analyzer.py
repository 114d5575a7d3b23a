"""The AI analyzer's tables: seen events, per-minute rollups, error-class rollups, job and
attempt history, detector checkpoints, findings and recommendations.

Written by hand to match ``jobline/tables.py`` (the migration test compares the two); the
reason for each key and index is there. No foreign keys: these rows are derived from
``jobline.events`` and rebuilt by a replay.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")
ZERO = sa.text("0")
EMPTY_INT_ARRAY = sa.text("'{}'::integer[]")


def _count(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Integer(), nullable=False, server_default=ZERO)


def upgrade() -> None:
    op.create_table(
        "analyzer_seen_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("seen_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_analyzer_seen_events")),
    )
    op.create_index("ix_analyzer_seen_events_seen_at", "analyzer_seen_events", ["seen_at"])

    op.create_table(
        "analyzer_rollups",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("bucket", TZ, nullable=False),
        _count("submitted"),
        _count("started"),
        _count("succeeded"),
        _count("retried"),
        _count("dead"),
        _count("cancelled"),
        sa.Column(
            "run_hist", pg.ARRAY(sa.Integer()), nullable=False, server_default=EMPTY_INT_ARRAY
        ),
        sa.Column("run_sum", sa.Double(), nullable=False, server_default=ZERO),
        sa.Column(
            "wait_hist", pg.ARRAY(sa.Integer()), nullable=False, server_default=EMPTY_INT_ARRAY
        ),
        sa.Column("wait_sum", sa.Double(), nullable=False, server_default=ZERO),
        sa.PrimaryKeyConstraint(
            "tenant_id", "job_type", "bucket", name=op.f("pk_analyzer_rollups")
        ),
    )
    op.create_index("ix_analyzer_rollups_bucket", "analyzer_rollups", ["bucket"])

    op.create_table(
        "analyzer_error_rollups",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("bucket", TZ, nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("error_class", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "job_type",
            "bucket",
            "fingerprint",
            name=op.f("pk_analyzer_error_rollups"),
        ),
    )

    op.create_table(
        "analyzer_jobs",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_analyzer_jobs")),
    )
    op.create_index(
        "ix_analyzer_jobs_tenant_type_updated",
        "analyzer_jobs",
        ["tenant_id", "job_type", sa.text("updated_at DESC")],
    )

    op.create_table(
        "analyzer_attempts",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("job_id", "attempt", name=op.f("pk_analyzer_attempts")),
    )

    op.create_table(
        "analyzer_detector_state",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("last_bucket", TZ, nullable=False),
        sa.Column("state", pg.JSONB(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("tenant_id", "job_type", name=op.f("pk_analyzer_detector_state")),
    )

    op.create_table(
        "analyzer_findings",
        sa.Column("id", sa.Uuid(), nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("window_start", TZ, nullable=False),
        sa.Column("window_end", TZ, nullable=False),
        sa.Column("baseline", sa.Double(), nullable=False),
        sa.Column("observed", sa.Double(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.Column("published_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analyzer_findings")),
    )
    op.create_index(
        "ix_analyzer_findings_tenant_created",
        "analyzer_findings",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_analyzer_findings_unpublished",
        "analyzer_findings",
        ["created_at"],
        postgresql_where=sa.text("published_at IS NULL"),
    )

    op.create_table(
        "analyzer_recommendations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("policy", pg.JSONB(), nullable=False),
        sa.Column("body", pg.JSONB(), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.Column("applied_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analyzer_recommendations")),
    )
    op.create_index(
        "ix_analyzer_recommendations_tenant_type",
        "analyzer_recommendations",
        ["tenant_id", "job_type"],
    )


def downgrade() -> None:
    for table in (
        "analyzer_recommendations",
        "analyzer_findings",
        "analyzer_detector_state",
        "analyzer_attempts",
        "analyzer_jobs",
        "analyzer_error_rollups",
        "analyzer_rollups",
        "analyzer_seen_events",
    ):
        op.drop_table(table)  # their indexes go with them
