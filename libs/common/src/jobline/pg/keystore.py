"""API keys and tenants in PostgreSQL: the gateway's admin routes and ``jobline keys`` share it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from jobline.core import apikeys
from jobline.core.apikeys import Scope


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


_COLUMNS = "id, tenant_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at"


async def ensure_tenant(conn: AsyncConnection, tenant_id: str, name: str | None = None) -> None:
    apikeys.validate_tenant(tenant_id)
    await conn.execute(
        text("INSERT INTO tenants (id, name) VALUES (:id, :name) ON CONFLICT (id) DO NOTHING"),
        {"id": tenant_id, "name": name or tenant_id},
    )


async def create_key(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    name: str,
    scopes: frozenset[Scope],
    expires_at: datetime | None = None,
) -> tuple[KeyRecord, str]:
    """Create the tenant if needed and a key for it; returns the record and the plaintext."""
    await ensure_tenant(conn, tenant_id)
    new = apikeys.generate()
    row = (
        await conn.execute(
            text(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes, expires_at)"
                " VALUES (:id, :tenant, :name, :prefix, :hash, :scopes, :expires)"
                f" RETURNING {_COLUMNS}"
            ),
            {
                "id": uuid4(),
                "tenant": tenant_id,
                "name": name,
                "prefix": new.prefix,
                "hash": new.key_hash,
                "scopes": sorted(s.value for s in scopes),
                "expires": expires_at,
            },
        )
    ).one()
    return _record(row), new.plaintext


async def list_keys(conn: AsyncConnection, tenant_id: str | None = None) -> list[KeyRecord]:
    where = "WHERE tenant_id = :tenant" if tenant_id else ""
    rows = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM api_keys {where} ORDER BY created_at, id"),
        {"tenant": tenant_id},
    )
    return [_record(r) for r in rows]


async def revoke_key(conn: AsyncConnection, key_id: UUID) -> KeyRecord | None:
    row = (
        await conn.execute(
            text(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = :id"
                f" RETURNING {_COLUMNS}"
            ),
            {"id": key_id},
        )
    ).one_or_none()
    return _record(row) if row else None


async def authenticate(conn: AsyncConnection, plaintext: str, now: datetime) -> KeyRecord | None:
    """The usable key ``plaintext`` names, or None (malformed, unknown, revoked, expired)."""
    try:
        prefix = apikeys.prefix_of(plaintext)
    except apikeys.MalformedKey:
        return None
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE prefix = :prefix"),
            {"prefix": prefix},
        )
    ).one_or_none()
    if row is None or not apikeys.verify(plaintext, row.key_hash):
        return None
    record = _record(row)
    return record if record.usable_at(now) else None


def _record(row: object) -> KeyRecord:
    r = row._mapping  # type: ignore[attr-defined]
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
