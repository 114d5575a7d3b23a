"""Tenant quotas and the shared submission bucket in PostgreSQL (statements in limits.sql)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from jobline.core.quotas import QUOTA_NAMES
from jobline.core.tokens import Grant, wait_for
from jobline.pg.db import Conn
from jobline.pg.queries import Queries

LIMITS_SQL: Final = Queries.load("jobline.pg", "limits.sql")


async def overrides(conn: Conn, tenant_id: str) -> dict[str, Any]:
    """The operator's non-default quotas of a tenant (an empty dict: all defaults)."""
    row = await LIMITS_SQL.fetchrow(conn, "quota_overrides", tenant_id=tenant_id)
    return {k: v for k, v in dict(row or {}).items() if v is not None}


async def set_overrides(conn: Conn, tenant_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Replace a tenant's overrides (a name left out goes back to the default)."""
    row = await LIMITS_SQL.fetchrow(
        conn,
        "set_quota_overrides",
        tenant_id=tenant_id,
        **{name: values.get(name) for name in QUOTA_NAMES},
    )
    return {k: v for k, v in dict(row or {}).items() if v is not None}


async def lease(
    conn: Conn, tenant_id: str, *, asked: int, needed: int, rate: float, burst: int
) -> Grant:
    """Lease up to ``asked`` tokens (at least ``needed``, or none) from the shared bucket."""
    row = await LIMITS_SQL.fetchrow(
        conn,
        "lease_tokens",
        tenant_id=tenant_id,
        asked=asked,
        needed=needed,
        rate=float(rate),
        burst=float(burst),
    )
    assert row is not None
    granted, tokens = int(row["granted"]), float(row["tokens"])
    return Grant(granted, tokens, 0.0 if granted else wait_for(tokens, needed, rate))


async def count_unfinished(conn: Conn, tenant_id: str, cap: int) -> int:
    """The tenant's unfinished jobs, counted up to ``cap + 1``."""
    return int(await LIMITS_SQL.fetchval(conn, "count_unfinished", tenant_id=tenant_id, cap=cap))


async def lock_and_count_schedules(conn: Conn, tenant_id: str) -> int:
    """Lock the tenant for this transaction and count its schedules (0: no tenant row yet)."""
    count = await LIMITS_SQL.fetchval(conn, "lock_tenant_schedules", tenant_id=tenant_id)
    return int(count or 0)
