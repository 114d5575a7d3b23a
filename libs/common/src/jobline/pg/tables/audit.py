"""The audit log: who (key, tenant) did what to which target, when and from where."""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, DateTime, Index, Table, Text, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB

from jobline.pg.tables.conventions import EMPTY_OBJECT, NEW_UUID, metadata, now

# No foreign keys on purpose: an entry outlives the key, the job and the tenant it names.
audit_log: Final = Table(
    "audit_log",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("at", DateTime(timezone=True), nullable=False, server_default=now()),
    Column("key_id", Uuid),  # NULL: an internal actor (the CLI on the database)
    Column("tenant_id", Text),  # the acting key's tenant
    Column("action", Text, nullable=False),  # e.g. key.create, job.cancel, policy.apply
    Column("target", Text, nullable=False),  # e.g. a key id, a job id, tenant/type
    Column("address", Text),  # the client's address as the service saw it
    Column("detail", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    # GET /v1/audit: newest first, keyset-paginated on (at, id), globally ...
    Index("ix_audit_log_at_id", text("at DESC"), text("id DESC")),
    # ... or for one tenant (the common operator question: "what did acme do").
    Index("ix_audit_log_tenant_at_id", "tenant_id", text("at DESC"), text("id DESC")),
)
