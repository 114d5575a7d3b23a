"""API keys and tenants in PostgreSQL: the gateway's admin routes and ``jobline keys`` share it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from jobline.core import apikeys
from jobline.core.apikeys import Scope
from jobline.pg.db import Conn
from jobline.pg.queries import SQL


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: UUID
    tenant_id: str
    name: str
    prefix: str
    scopes: frozenset[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now


async def ensure_tenant(conn: Conn, tenant_id: str, name: str | None = None) -> None:
    apikeys.validate_tenant(tenant_id)
    await SQL.execute(conn, "ensure_tenant", id=tenant_id, name=name or tenant_id)


async def create_key(
    conn: Conn,
    *,
    tenant_id: str,
    name: str,
    scopes: frozenset[Scope],
    expires_at: datetime | None = None,
) -> tuple[KeyRecord, str]:
    """Create the tenant if needed and a key for it; returns the record and the plaintext."""
    await ensure_tenant(conn, tenant_id)
    new = apikeys.generate()
    row = await SQL.fetchrow(
        conn,
        "insert_key",
        id=uuid4(),
        tenant_id=tenant_id,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        scopes=sorted(s.value for s in scopes),
        expires_at=expires_at,
    )
    assert row is not None
    return record_of(row), new.plaintext


async def list_keys(conn: Conn, tenant_id: str | None = None) -> list[KeyRecord]:
    return [record_of(r) for r in await SQL.fetch(conn, "list_keys", tenant_id=tenant_id)]


async def revoke_key(conn: Conn, key_id: UUID, *, tenant_id: str | None = None) -> KeyRecord | None:
    """Revoke a key (only if it is ``tenant_id``'s, when given); None if there is no such key."""
    row = await SQL.fetchrow(conn, "revoke_key", id=key_id, tenant_id=tenant_id)
    return record_of(row) if row else None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key row with its hash, as the authentication lookup reads it."""

    record: KeyRecord
    key_hash: str


async def by_prefix(conn: Conn, prefix: str) -> StoredKey | None:
    row = await SQL.fetchrow(conn, "key_by_prefix", prefix=prefix)
    return StoredKey(record_of(row), row["key_hash"]) if row else None


async def authenticate(conn: Conn, plaintext: str, now: datetime) -> KeyRecord | None:
    """The usable key ``plaintext`` names, or None (malformed, unknown, revoked, expired)."""
    try:
        prefix = apikeys.prefix_of(plaintext)
    except apikeys.MalformedKey:
        return None
    stored = await by_prefix(conn, prefix)
    if stored is None or not apikeys.verify(plaintext, stored.key_hash):
        return None
    return stored.record if stored.record.usable_at(now) else None


def record_of(r: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        id=r["id"],
        tenant_id=r["tenant_id"],
        name=r["name"],
        prefix=r["prefix"],
        scopes=frozenset(Scope(s) for s in r["scopes"]),
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        last_used_at=r["last_used_at"],
    )
