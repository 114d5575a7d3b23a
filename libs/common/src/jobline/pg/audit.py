"""The audit log in PostgreSQL: who (key, tenant) did what to which target, when, from where.

Every service records on the connection of the action's own transaction, so an entry exists
exactly when the action committed: :func:`record` on asyncpg; the analyzer, still on
SQLAlchemy, binds :func:`record_values` to the same INSERT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from jobline.pg.db import Conn
from jobline.pg.queries import Queries

AUDIT_SQL: Final = Queries.load("jobline.pg", "audit.sql")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the API key and its tenant, and the client address it came from."""

    key_id: UUID | None
    tenant_id: str | None
    address: str | None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    tenant_id: str | None = None
    action: str | None = None
    key_id: UUID | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    id: UUID
    at: datetime
    key_id: UUID | None
    tenant_id: str | None
    action: str
    target: str
    address: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


async def record(
    conn: Conn, actor: Actor, action: str, target: str, detail: Mapping[str, Any] | None = None
) -> None:
    """Add an entry (in the caller's transaction)."""
    await AUDIT_SQL.execute(conn, "record", **record_values(actor, action, target, detail))


def record_values(
    actor: Actor, action: str, target: str, detail: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters of :data:`RECORD_SQL` by name."""
    return {
        "key_id": actor.key_id,
        "tenant_id": actor.tenant_id,
        "action": action,
        "target": target,
        "address": actor.address,
        "detail": dict(detail or {}),
    }


async def entries(
    conn: Conn, where: AuditFilter, after: tuple[datetime, UUID] | None, limit: int
) -> list[Entry]:
    """Entries newest first, strictly after the cursor ``(at, id)`` if given."""
    rows = await AUDIT_SQL.fetch(
        conn,
        "list",
        tenant_id=where.tenant_id,
        action=where.action,
        key_id=where.key_id,
        target=where.target,
        since=where.since,
        until=where.until,
        after_at=after[0] if after else None,
        after_id=after[1] if after else None,
        limit=limit,
    )
    return [Entry(**dict(r)) for r in rows]
