"""The gateway's reads of jobs and its idempotency keys (statements in ``queries.sql``).

Job *writes* go through :mod:`jobline.pg.jobstore` (the state machine's guarded path).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg

from jobline.core.job import Job
from jobline.pg.db import Conn
from jobline.pg.jobrows import job_from_row
from jobline.pg.queries import SQL as SHARED
from jobline.pg.queries import Queries
from jobline_gateway.cursors import Cursor

SQL: Final = Queries.load("jobline_gateway")


async def get_job(conn: Conn, tenant_id: str, job_id: UUID) -> Job | None:
    row = await SQL.fetchrow(conn, "get_job", id=job_id, tenant_id=tenant_id)
    return job_from_row(row) if row is not None else None


async def job_exists(conn: Conn, tenant_id: str, job_id: UUID) -> bool:
    return bool(await SQL.fetchval(conn, "job_exists", id=job_id, tenant_id=tenant_id))


async def attempts(conn: Conn, job_id: UUID) -> list[asyncpg.Record]:
    return await SHARED.fetch(conn, "job_attempts", job_id=job_id)


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: str | None = None
    type: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # The console's text search: a job id's prefix (a range of the primary key) or the jobs
    # an idempotency key named.
    id_low: UUID | None = None
    id_high: UUID | None = None
    ids: list[UUID] | None = None


# The listing's SQL is put together from these fixed fragments (never from input), so each
# combination of filters is its own statement with its own plan: with optional filters
# folded into one statement (":x IS NULL OR col = :x"), a prepared statement's generic plan
# could not pick the index that fits the filters given.
_LIST_BASE: Final = "SELECT * FROM jobs WHERE tenant_id = $1"
_LIST_FILTERS: Final = (
    ("status", "state = ${}"),
    ("type", "type = ${}"),
    # No index leads with queue; it filters the tenant's range scan instead.
    ("queue", "queue = ${}"),
    ("created_after", "created_at >= ${}"),
    ("created_before", "created_at < ${}"),
    ("id_low", "id >= ${}"),
    ("id_high", "id <= ${}"),
    ("ids", "id = ANY(${})"),
)


async def list_jobs(
    conn: Conn, tenant_id: str, where: JobFilter, after: Cursor | None, limit: int
) -> tuple[list[Job], Cursor | None]:
    """A page newest first, and the cursor of the next page (None on the last page).

    Keyset pagination on (created_at DESC, id DESC): that is exactly the order of
    ix_jobs_tenant_created (and of its state/type variants when those filters are given),
    so each page is an index range scan that stops after ``limit + 1`` rows, however deep
    the page. The row-value comparison ``(created_at, id) < ($a, $b)`` is what lets
    PostgreSQL use the composite index for the seek; OFFSET would rescan every earlier row.
    """
    sql = [_LIST_BASE]
    args: list[Any] = [tenant_id]
    for name, fragment in _LIST_FILTERS:
        value = getattr(where, name)
        if value is not None:
            args.append(value)
            sql.append("AND " + fragment.format(len(args)))
    if after is not None:
        args += [after.created_at, after.id]
        sql.append(f"AND (created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)  # one extra row says whether there is a next page
    sql.append(f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}")
    rows = await conn.fetch(" ".join(sql), *args)
    page = [job_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return page, (Cursor(page[-1].created_at, page[-1].id) if more and page else None)


@dataclass(frozen=True, slots=True)
class StoredKey:
    request_hash: str
    job_ids: list[UUID]
    response: Any


async def stored_key(conn: Conn, tenant_id: str, key: str) -> StoredKey | None:
    row = await SQL.fetchrow(conn, "stored_key", tenant_id=tenant_id, key=key)
    return StoredKey(row["request_hash"], list(row["job_ids"]), row["response"]) if row else None


async def live_key(conn: Conn, tenant_id: str, key: str) -> bool:
    """Whether ``key`` is claimed and not expired."""
    return bool(await SQL.fetchval(conn, "live_key", tenant_id=tenant_id, key=key))


async def purge_idempotency_keys(conn: Conn, limit: int = 10_000) -> int:
    """Delete up to ``limit`` expired keys; returns how many."""
    status = await SQL.execute(conn, "purge_idempotency_keys", limit=limit)
    return int(status.rsplit(" ", 1)[-1])
