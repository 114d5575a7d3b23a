"""Declared queues and registered job types: ``queues``, ``job_types``.

- ``queues``: a queue exists once declared (here ``default``; operators through
  ``PUT /v1/admin/queues/{name}``; workers for the queues they serve). The gateway refuses a
  job on an undeclared queue and the relay publishes only to declared queues' topics, so a
  tenant can no longer create Kafka topics by naming queues. ``partitions`` is what the
  topic is created with (NULL: the deployment's ``JOBLINE_TOPIC_PARTITIONS``).
- ``job_types``: what workers registered at start (or operators declared ahead of them):
  the type's queue, the payload's JSON Schema, the tenants allowed to submit it.
- Both notify ``jobline_catalog`` on every change (the function of migration 0003), so the
  gateways' and relays' copies are dropped at once.

Every queue that unfinished jobs (or a dead job, which may be redriven) or a schedule
already use is declared here, so nothing written before this release waits for a
declaration after it.

Expand only: two new tables. Gateways of the previous release still accept any queue while
this one rolls out; the new relay holds their rows until the queue is declared (see
``jobline_relay.publisher``), so roll out the gateways promptly.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DECLARE_EXISTING_QUEUES = """
INSERT INTO queues (name, declared_by)
SELECT DISTINCT queue, 'migration' FROM (
    SELECT 'default' AS queue
    UNION ALL SELECT queue FROM jobs WHERE state NOT IN ('succeeded', 'cancelled')
    UNION ALL SELECT coalesce(job_template->>'queue', 'default') FROM schedules
) AS used
WHERE queue ~ '^[a-z0-9_-]{1,64}$' AND queue <> 'dlq'
ON CONFLICT (name) DO NOTHING
"""


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _catalog_trigger(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_catalog_notify AFTER INSERT OR UPDATE OR DELETE ON {table}"
        " FOR EACH STATEMENT EXECUTE FUNCTION jobline_catalog_notify()"
    )


def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("partitions", sa.Integer(), nullable=True),
        sa.Column("declared_by", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "name ~ '^[a-z0-9_-]{1,64}$' AND name <> 'dlq'", name=op.f("ck_queues_name_valid")
        ),
        sa.CheckConstraint(
            "partitions IS NULL OR partitions BETWEEN 1 AND 10000",
            name=op.f("ck_queues_partitions_range"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_queues")),
    )
    op.create_table(
        "job_types",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("payload_schema", pg.JSONB(), nullable=True),
        sa.Column("allowed_tenants", pg.ARRAY(sa.Text()), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("registered_by", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "source IN ('worker', 'operator')", name=op.f("ck_job_types_source_valid")
        ),
        sa.ForeignKeyConstraint(["queue"], ["queues.name"], name=op.f("fk_job_types_queue_queues")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_types")),
    )
    op.create_index("ix_job_types_queue", "job_types", ["queue"])
    op.execute(_catalog_trigger("queues"))
    op.execute(_catalog_trigger("job_types"))
    op.execute(DECLARE_EXISTING_QUEUES)


def downgrade() -> None:
    op.drop_table("job_types")
    op.drop_table("queues")
