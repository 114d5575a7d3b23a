"""The console's statements (``console.sql``); every one scoped by tenant."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from jobline.pg.db import Conn
from jobline.pg.queries import Queries

SQL: Final = Queries.load("jobline_gateway.console", "console.sql")


async def tenants(conn: Conn) -> list[str]:
    return [row["id"] for row in await SQL.fetch(conn, "tenants")]


async def keyed_jobs(conn: Conn, tenant: str, key: str) -> list[UUID]:
    """The jobs an Idempotency-Key made (none if the key is unknown or purged)."""
    found = await SQL.fetchval(conn, "keyed_jobs", tenant_id=tenant, key=key)
    return list(found or [])


def _group(tenant: str, job_type: str, queue: str, error_class: str | None) -> dict[str, object]:
    return {"tenant_id": tenant, "type": job_type, "queue": queue, "error_class": error_class}


async def group_ids(
    conn: Conn, tenant: str, job_type: str, queue: str, error_class: str | None, *, limit: int
) -> list[UUID]:
    rows = await SQL.fetch(
        conn, "dlq_group_ids", **_group(tenant, job_type, queue, error_class), limit=limit
    )
    return [row["id"] for row in rows]


async def group_count(
    conn: Conn, tenant: str, job_type: str, queue: str, error_class: str | None
) -> int:
    return int(
        await SQL.fetchval(conn, "dlq_group_count", **_group(tenant, job_type, queue, error_class))
    )


async def purge_group(
    conn: Conn, tenant: str, job_type: str, queue: str, error_class: str | None, *, limit: int
) -> int:
    rows = await SQL.fetch(
        conn, "purge_dlq_group", **_group(tenant, job_type, queue, error_class), limit=limit
    )
    return len(rows)
