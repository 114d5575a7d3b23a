"""A tenant's job-type policies (``job_type_policies``): the gateway's ``/v1/policies``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobline.pg.db import Conn

_COLUMNS = "type, max_attempts, backoff, non_retryable_errors, source, updated_at"


async def list_policies(conn: Conn, tenant_id: str) -> list[Any]:
    return list(
        await conn.fetch(
            f"SELECT {_COLUMNS} FROM job_type_policies WHERE tenant_id = $1 ORDER BY type",
            tenant_id,
        )
    )


async def set_policy(
    conn: Conn,
    tenant_id: str,
    job_type: str,
    *,
    max_attempts: int | None,
    backoff: dict[str, Any] | None,
    non_retryable_errors: Sequence[str],
    source: str,
) -> Any:
    """Insert or replace; the table's trigger notifies every gateway's catalog."""
    return await conn.fetchrow(
        "INSERT INTO job_type_policies"
        " (tenant_id, type, max_attempts, backoff, non_retryable_errors, source, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, now())"
        " ON CONFLICT (tenant_id, type) DO UPDATE SET max_attempts = EXCLUDED.max_attempts,"
        " backoff = EXCLUDED.backoff, non_retryable_errors = EXCLUDED.non_retryable_errors,"
        " source = EXCLUDED.source, updated_at = EXCLUDED.updated_at"
        f" RETURNING {_COLUMNS}",
        tenant_id,
        job_type,
        max_attempts,
        backoff,
        list(non_retryable_errors),
        source,
    )


async def delete_policy(conn: Conn, tenant_id: str, job_type: str) -> bool:
    status = await conn.execute(
        "DELETE FROM job_type_policies WHERE tenant_id = $1 AND type = $2", tenant_id, job_type
    )
    return bool(status.endswith(" 1"))
