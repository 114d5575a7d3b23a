"""Tenants and their API keys."""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, DateTime, Index, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import ARRAY

from jobline.pg.tables.conventions import NEW_UUID, created_at, metadata, tenant_fk

tenants: Final = Table(
    "tenants",
    metadata,
    Column("id", Text, primary_key=True),  # a slug, e.g. "acme"
    Column("name", Text, nullable=False),
    created_at(),
)

api_keys: Final = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("tenant_id", Text, tenant_fk(), nullable=False),
    Column("name", Text, nullable=False),
    # The non-secret part of the presented key: the gateway finds the row by it (the unique
    # constraint is that lookup's index), then compares key_hash in constant time.
    Column("prefix", Text, nullable=False, unique=True),
    Column("key_hash", Text, nullable=False),  # sha256 hex of the secret part
    Column("scopes", ARRAY(Text), nullable=False),
    created_at(),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    # Listing a tenant's keys, and the ON DELETE CASCADE from tenants.
    Index("ix_api_keys_tenant_id", "tenant_id"),
)
