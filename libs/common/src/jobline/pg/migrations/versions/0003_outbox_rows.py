"""One outbox row per transition, per-job publish order, and change notifications for caches.

- ``outbox`` rows carry the messages of one transition that fall due together (``topics``,
  ``payloads``: a submission's "queued" event and its work message are one row), and
  ``due_attempt`` marks a delayed work message whose publication makes its job ``queued``.
  ``ix_outbox_job_id_id`` serves the relay's rule that a job's row waits for its older due
  rows (per-job order across relays).
- The outbox trigger notifies with an empty payload when a row is due now, and with the
  epoch of the earliest future ``available_at`` when rows wait: an idle relay sleeps until
  exactly then.
- ``api_keys`` and ``job_type_policies`` notify ``jobline_catalog`` on every change, so the
  gateways' in-memory copies are dropped at once.

Expand only: the one-message columns (``topic``, ``value``, ``headers``) stay, nullable, so
gateways and workers of the previous version keep writing rows while the new version rolls
out, and the new relay publishes both kinds. Roll out the relays first (an old relay cannot
read the new rows; meanwhile they simply wait), then the rest. A later migration drops the
old columns (contract) once no previous-version process is left.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOX_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION jobline_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    later timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE available_at <= now()) THEN
        PERFORM pg_notify('jobline_outbox', '');
    END IF;
    SELECT min(available_at) INTO later FROM new_rows WHERE available_at > now();
    IF later IS NOT NULL THEN
        PERFORM pg_notify('jobline_outbox', EXTRACT(EPOCH FROM later)::text);
    END IF;
    RETURN NULL;
END $$
"""

OUTBOX_NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_notify
AFTER INSERT ON outbox
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT
EXECUTE FUNCTION jobline_outbox_notify()
"""

CATALOG_NOTIFY_FUNCTION = """
CREATE FUNCTION jobline_catalog_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobline_catalog', TG_TABLE_NAME);
    RETURN NULL;
END $$
"""


def _catalog_trigger(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_catalog_notify AFTER INSERT OR UPDATE OR DELETE ON {table}"
        " FOR EACH STATEMENT EXECUTE FUNCTION jobline_catalog_notify()"
    )


def upgrade() -> None:
    op.add_column("outbox", sa.Column("topics", pg.ARRAY(sa.Text()), nullable=True))
    op.add_column("outbox", sa.Column("payloads", pg.ARRAY(sa.LargeBinary()), nullable=True))
    op.add_column("outbox", sa.Column("due_attempt", sa.Integer(), nullable=True))
    op.alter_column("outbox", "topic", nullable=True)
    op.alter_column("outbox", "value", nullable=True)
    op.create_check_constraint(
        op.f("ck_outbox_one_form"),
        "outbox",
        "(topics IS NOT NULL AND payloads IS NOT NULL)"
        " OR (topic IS NOT NULL AND value IS NOT NULL)",
    )
    op.create_index("ix_outbox_job_id_id", "outbox", ["job_id", "id"])
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute(OUTBOX_NOTIFY_FUNCTION)
    op.execute(OUTBOX_NOTIFY_TRIGGER)
    op.execute(CATALOG_NOTIFY_FUNCTION)
    op.execute(_catalog_trigger("api_keys"))
    op.execute(_catalog_trigger("job_type_policies"))


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS job_type_policies_catalog_notify ON job_type_policies")
    op.execute("DROP TRIGGER IF EXISTS api_keys_catalog_notify ON api_keys")
    op.execute("DROP FUNCTION IF EXISTS jobline_catalog_notify()")
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.drop_index("ix_outbox_job_id_id", table_name="outbox")
    # A row of several messages becomes one row per message, in order.
    op.execute(
        """
        INSERT INTO outbox (topic, value, available_at, created_at, job_id, key)
        SELECT m.topic, m.payload, o.available_at, o.created_at, o.job_id, o.key
        FROM outbox o, unnest(o.topics, o.payloads) WITH ORDINALITY AS m(topic, payload, n)
        WHERE o.topics IS NOT NULL
        ORDER BY o.id, m.n
        """
    )
    op.execute("DELETE FROM outbox WHERE topics IS NOT NULL")
    op.drop_constraint(op.f("ck_outbox_one_form"), "outbox", type_="check")
    op.alter_column("outbox", "topic", nullable=False)
    op.alter_column("outbox", "value", nullable=False)
    op.drop_column("outbox", "due_attempt")
    op.drop_column("outbox", "payloads")
    op.drop_column("outbox", "topics")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION jobline_outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('jobline_outbox', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox"
        " FOR EACH STATEMENT EXECUTE FUNCTION jobline_outbox_notify()"
    )
