"""Webhooks: a tenant's endpoints and the deliveries of lifecycle events to them.

The relay fans each event out into one ``webhook_deliveries`` row per matching enabled
endpoint (``UNIQUE (endpoint_id, event_id)``: a redelivered event adds nothing) and delivers
due rows; the row is the delivery log the API pages through.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from jobline.pg.tables.conventions import (
    NEW_UUID,
    created_at,
    metadata,
    one_of,
    tenant_fk,
    updated_at,
)

# pending: waiting for its next attempt (or held while its endpoint is disabled: no
# next_attempt_at); succeeded / failed: finished (failed: every attempt failed).
DELIVERY_STATUSES: Final = ("pending", "succeeded", "failed")


webhook_endpoints: Final = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("tenant_id", Text, tenant_fk(), nullable=False),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("event_types", ARRAY(Text), nullable=False),
    # Needed in the clear to sign (an HMAC key, not a password): shown to the tenant once.
    Column("secret", Text, nullable=False),
    # After a rotation the old secret also signs until it expires, so receivers can switch.
    Column("previous_secret", Text),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("disabled_reason", Text),
    # Deliveries in a row that failed for good; reset by any successful attempt.
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    created_at(),
    updated_at(),
    CheckConstraint("consecutive_failures >= 0", name="failures_nonnegative"),
    # The tenant's listing (keyset on created_at, id), the fan-out's lookup of a tenant's
    # endpoints, and the ON DELETE CASCADE from tenants.
    Index("ix_webhook_endpoints_tenant_created", "tenant_id", "created_at", "id"),
)

webhook_deliveries: Final = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column(
        "endpoint_id",
        Uuid,
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    created_at(),
    Column("finished_at", DateTime(timezone=True)),
    # One delivery per event per endpoint: the fan-out's ON CONFLICT DO NOTHING target.
    # Leads with endpoint_id, so it also serves the cascade from webhook_endpoints.
    UniqueConstraint("endpoint_id", "event_id"),
    CheckConstraint(one_of("status", DELIVERY_STATUSES), name="status"),
    CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    # The delivery log of an endpoint, newest first (keyset on created_at, id).
    Index(
        "ix_webhook_deliveries_endpoint_created",
        "endpoint_id",
        text("created_at DESC"),
        text("id DESC"),
    ),
    # The delivery loop's claim: pending rows by next_attempt_at. Partial, so finished and
    # held rows cost nothing.
    Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("status = 'pending' AND next_attempt_at IS NOT NULL"),
    ),
    # Retention: finished rows by when they finished.
    Index(
        "ix_webhook_deliveries_finished",
        "finished_at",
        postgresql_where=text("finished_at IS NOT NULL"),
    ),
)
