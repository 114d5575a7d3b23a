"""Initial schema: tenants, API keys, jobs, attempts, idempotency keys, outbox, schedules,
job type policies, and the outbox's NOTIFY trigger.

Written by hand to match ``jobline/tables.py`` (the migration test compares the two).
Constraint names follow ``tables.NAMING_CONVENTION`` and are spelled out in full, wrapped in
``op.f`` because env.py hands alembic that convention and it must not be applied twice. The
reason for each index is in ``tables.py``. Later migrations must not import ``tables.py``:
it describes the newest schema, not the one a migration starts from.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")
NEW_UUID = sa.text("gen_random_uuid()")

# Statement-level, so a multi-row INSERT notifies once; PostgreSQL also folds identical
# notifications raised in one transaction, so the relay is woken once per committed
# transaction however many rows it wrote. The payload is empty: the relay re-reads the table.
OUTBOX_NOTIFY_FUNCTION = """
CREATE FUNCTION jobline_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobline_outbox', '');
    RETURN NULL;
END;
$$
"""

OUTBOX_NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_notify
AFTER INSERT ON outbox
FOR EACH STATEMENT
EXECUTE FUNCTION jobline_outbox_notify()
"""


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", TZ, nullable=False, server_default=NOW)


def _updated_at() -> sa.Column[object]:
    return sa.Column("updated_at", TZ, nullable=False, server_default=NOW)


def _tenant_id(table: str) -> sa.Column[object]:
    return sa.Column(
        "tenant_id",
        sa.Text(),
        sa.ForeignKey("tenants.id", ondelete="CASCADE", name=op.f(f"fk_{table}_tenant_id_tenants")),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False, server_default=NEW_UUID),
        _tenant_id("api_keys"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("scopes", pg.ARRAY(sa.Text()), nullable=False),
        _created_at(),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.Column("last_used_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])

    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False, server_default=NEW_UUID),
        _tenant_id("schedules"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("timezone", sa.Text(), nullable=False, server_default=sa.text("'UTC'")),
        sa.Column("interval_seconds", sa.Double(), nullable=True),
        sa.Column("job_template", pg.JSONB(), nullable=False),
        sa.Column("misfire_policy", sa.Text(), nullable=False, server_default=sa.text("'skip'")),
        sa.Column("catch_up_limit", sa.Integer(), nullable=False, server_default=sa.text("100")),
        sa.Column("overlap_policy", sa.Text(), nullable=False, server_default=sa.text("'allow'")),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("start_at", TZ, nullable=True),
        sa.Column("end_at", TZ, nullable=True),
        sa.Column("next_fire_at", TZ, nullable=True),
        sa.Column("last_fired_at", TZ, nullable=True),
        _created_at(),
        _updated_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_schedules_tenant_id_name")),
        sa.CheckConstraint(
            "(cron IS NULL) <> (interval_seconds IS NULL)",
            name=op.f("ck_schedules_cron_xor_interval"),
        ),
        sa.CheckConstraint(
            "interval_seconds IS NULL OR interval_seconds > 0",
            name=op.f("ck_schedules_interval_positive"),
        ),
        sa.CheckConstraint(
            "catch_up_limit >= 0", name=op.f("ck_schedules_catch_up_limit_nonnegative")
        ),
        sa.CheckConstraint(
            "misfire_policy IN ('skip', 'fire_once', 'catch_up')",
            name=op.f("ck_schedules_misfire_policy"),
        ),
        sa.CheckConstraint(
            "overlap_policy IN ('allow', 'skip_if_running')",
            name=op.f("ck_schedules_overlap_policy"),
        ),
    )
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_fire_at"],
        postgresql_where=sa.text("NOT paused AND next_fire_at IS NOT NULL"),
    )

    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False, server_default=NEW_UUID),
        _tenant_id("jobs"),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("payload", pg.JSONB(), nullable=False),
        sa.Column("metadata", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("budget_start", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("backoff", pg.JSONB(), nullable=False),
        sa.Column("timeout_seconds", sa.Double(), nullable=False),
        sa.Column("run_at", TZ, nullable=False, server_default=NOW),
        _created_at(),
        _updated_at(),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", TZ, nullable=True),
        sa.Column("cancel_requested_at", TZ, nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("result", pg.JSONB(), nullable=True),
        sa.Column("last_error", pg.JSONB(), nullable=True),
        sa.Column("errors", pg.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column(
            "schedule_id",
            sa.Uuid(),
            sa.ForeignKey(
                "schedules.id", ondelete="SET NULL", name=op.f("fk_jobs_schedule_id_schedules")
            ),
            nullable=True,
        ),
        sa.Column("fire_time", TZ, nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("traceparent", sa.Text(), nullable=True),
        sa.Column("purge_after", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("schedule_id", "fire_time", name=op.f("uq_jobs_schedule_id_fire_time")),
        sa.CheckConstraint(
            "state IN ('scheduled', 'queued', 'running', 'retrying', 'succeeded', 'dead',"
            " 'cancelled')",
            name=op.f("ck_jobs_state"),
        ),
        sa.CheckConstraint(
            "attempt >= 0 AND budget_start >= 0", name=op.f("ck_jobs_attempt_nonnegative")
        ),
        sa.CheckConstraint("max_attempts >= 1", name=op.f("ck_jobs_max_attempts_positive")),
        sa.CheckConstraint("timeout_seconds > 0", name=op.f("ck_jobs_timeout_positive")),
    )
    op.create_index(
        "ix_jobs_tenant_created",
        "jobs",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_jobs_tenant_state_created",
        "jobs",
        ["tenant_id", "state", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_jobs_tenant_type_created",
        "jobs",
        ["tenant_id", "type", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_jobs_running_lease",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("state = 'running'"),
    )
    op.create_index(
        "ix_jobs_schedule_created",
        "jobs",
        ["schedule_id", sa.text("created_at DESC")],
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_purge_after",
        "jobs",
        ["purge_after"],
        postgresql_where=sa.text("purge_after IS NOT NULL"),
    )

    op.create_table(
        "idempotency_keys",
        _tenant_id("idempotency_keys"),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("job_ids", pg.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("response", pg.JSONB(), nullable=True),
        _created_at(),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])

    op.create_table(
        "job_attempts",
        sa.Column(
            "job_id",
            sa.Uuid(),
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name=op.f("fk_job_attempts_job_id_jobs")),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("started_at", TZ, nullable=False, server_default=NOW),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("error", pg.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "attempt", name=op.f("pk_job_attempts")),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('succeeded', 'failed', 'timeout', 'lease_expired',"
            " 'cancelled', 'handed_back')",
            name=op.f("ck_job_attempts_outcome"),
        ),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("available_at", TZ, nullable=False, server_default=NOW),
        _created_at(),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index("ix_outbox_available_at_id", "outbox", ["available_at", "id"])
    op.execute(OUTBOX_NOTIFY_FUNCTION)
    op.execute(OUTBOX_NOTIFY_TRIGGER)

    op.create_table(
        "job_type_policies",
        _tenant_id("job_type_policies"),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("backoff", pg.JSONB(), nullable=True),
        sa.Column(
            "non_retryable_errors",
            pg.ARRAY(sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::text[]"),
        ),
        sa.Column("source", sa.Text(), nullable=False),
        _updated_at(),
        sa.PrimaryKeyConstraint("tenant_id", "type", name=op.f("pk_job_type_policies")),
        sa.CheckConstraint(
            "max_attempts IS NULL OR max_attempts >= 1",
            name=op.f("ck_job_type_policies_max_attempts_positive"),
        ),
    )


def downgrade() -> None:
    op.drop_table("job_type_policies")
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS jobline_outbox_notify()")
    op.drop_table("outbox")
    op.drop_table("job_attempts")
    op.drop_table("idempotency_keys")
    op.drop_table("jobs")  # its indexes go with it
    op.drop_table("schedules")
    op.drop_table("api_keys")
    op.drop_table("tenants")
