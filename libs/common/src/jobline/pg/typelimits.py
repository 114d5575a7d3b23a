"""Tenants' own limits of job types (``job_type_limits``): the gateway writes them, every
worker reads those of its types (the rules: :func:`jobline.core.limits.effective`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from jobline.core.limits import Override, gate_prefixes
from jobline.pg.db import Conn

_COLUMNS = "tenant_id, type, concurrency, concurrency_key, rate_limit, rate_key, updated_at"


def override_of(row: Any) -> Override:
    return Override(row["concurrency"], row["concurrency_key"], row["rate_limit"], row["rate_key"])


async def for_types(conn: Conn, types: Collection[str]) -> dict[tuple[str, str], Override]:
    """Every tenant's override of these types, by (tenant, type)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM job_type_limits WHERE type = ANY($1::text[])", list(types)
    )
    return {(r["tenant_id"], r["type"]): override_of(r) for r in rows}


async def override_for(conn: Conn, tenant_id: str, job_type: str) -> Override | None:
    row = await get(conn, tenant_id, job_type)
    return override_of(row) if row is not None else None


async def get(conn: Conn, tenant_id: str, job_type: str) -> Any:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM job_type_limits WHERE tenant_id = $1 AND type = $2",
        tenant_id,
        job_type,
    )


async def list_for_tenant(conn: Conn, tenant_id: str) -> list[Any]:
    return list(
        await conn.fetch(
            f"SELECT {_COLUMNS} FROM job_type_limits WHERE tenant_id = $1 ORDER BY type",
            tenant_id,
        )
    )


async def put(conn: Conn, tenant_id: str, job_type: str, override: Override) -> Any:
    """Insert or replace; the tenant's gates of the type are forgotten (see below)."""
    row = await conn.fetchrow(
        "INSERT INTO job_type_limits"
        " (tenant_id, type, concurrency, concurrency_key, rate_limit, rate_key, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, now())"
        " ON CONFLICT (tenant_id, type) DO UPDATE SET concurrency = EXCLUDED.concurrency,"
        " concurrency_key = EXCLUDED.concurrency_key, rate_limit = EXCLUDED.rate_limit,"
        " rate_key = EXCLUDED.rate_key, updated_at = EXCLUDED.updated_at"
        f" RETURNING {_COLUMNS}",
        tenant_id,
        job_type,
        override.concurrency,
        override.concurrency_key,
        override.rate_limit,
        override.rate_key,
    )
    await forget_gates(conn, tenant_id, job_type)
    return row


async def delete(conn: Conn, tenant_id: str, job_type: str) -> bool:
    status = await conn.execute(
        "DELETE FROM job_type_limits WHERE tenant_id = $1 AND type = $2", tenant_id, job_type
    )
    if not status.endswith(" 1"):
        return False
    await forget_gates(conn, tenant_id, job_type)
    return True


async def forget_gates(conn: Conn, tenant_id: str, job_type: str) -> None:
    """Drop the limits the relay knows for the tenant's gates of the type.

    Jobs held there under the old limits are then released by the relay (a gate with held
    jobs and no known limit releases them all), and each one's claim decides again under the
    new limits, holding again what does not fit (and noting the gate's new limit). A type
    name with ``:`` can make a prefix match another tenant's gate too: that only makes its
    held jobs be decided again, which is always safe.
    """
    prefixes = gate_prefixes(job_type, tenant_id)
    await conn.execute(
        "DELETE FROM limit_gates WHERE gate = ANY($1::text[])"
        " OR left(gate, length($2) + 1) = $2 || ':' OR left(gate, length($3) + 1) = $3 || ':'",
        prefixes,
        prefixes[0],
        prefixes[1],
    )
