"""The gateway's own SQL: reads for the API, type policies and idempotency keys.

Job *writes* go through :mod:`jobline.jobstore` (the state machine's guarded path); this
module only reads jobs and owns the ``idempotency_keys`` rows. Every statement is scoped by
``tenant_id``: a job of another tenant is simply not found.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from jobline.core.backoff import BackoffPolicy
from jobline.core.jobdefaults import TypePolicy
from jobline.core.states import Job
from jobline.pg import tables
from jobline.pg.jobstore import job_from_row

jobs = tables.jobs


# --- reads ------------------------------------------------------------------------------


_GET_JOB = text("SELECT * FROM jobs WHERE id = :id AND tenant_id = :tenant_id")


async def get_job(conn: AsyncConnection, tenant_id: str, job_id: UUID) -> Job | None:
    # Primary-key lookup; the tenant condition makes another tenant's id a miss (404).
    # text(), like _TYPE_POLICIES: a hot read, no per-call expression building.
    row = (await conn.execute(_GET_JOB, {"id": job_id, "tenant_id": tenant_id})).one_or_none()
    return job_from_row(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the listing order: the last row of the previous page."""

    created_at: datetime
    id: UUID

    def encode(self) -> str:
        raw = json.dumps({"c": self.created_at.isoformat(), "i": str(self.id)})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Raises ValueError for anything this gateway did not hand out."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            created = datetime.fromisoformat(data["c"])
            if created.tzinfo is None:
                raise ValueError("naive")
            return cls(created, UUID(data["i"]))
        except (binascii.Error, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError("invalid cursor") from exc


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: str | None = None
    type: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


async def list_jobs(
    conn: AsyncConnection, tenant_id: str, where: JobFilter, after: Cursor | None, limit: int
) -> tuple[list[Job], Cursor | None]:
    """A page newest first, and the cursor of the next page (None on the last page).

    Keyset pagination on (created_at DESC, id DESC): that is exactly the order of
    ix_jobs_tenant_created (and of its state/type variants when those filters are given),
    so each page is an index range scan that stops after ``limit + 1`` rows, however deep
    the page. The row-value comparison ``(created_at, id) < (:c, :i)`` is what lets
    PostgreSQL use the composite index for the seek; OFFSET would rescan every earlier row.
    """
    conditions = [jobs.c.tenant_id == tenant_id]
    if where.status is not None:
        conditions.append(jobs.c.state == where.status)
    if where.type is not None:
        conditions.append(jobs.c.type == where.type)
    if where.queue is not None:
        # No index leads with queue; it filters the tenant's range scan instead.
        conditions.append(jobs.c.queue == where.queue)
    if where.created_after is not None:
        conditions.append(jobs.c.created_at >= where.created_after)
    if where.created_before is not None:
        conditions.append(jobs.c.created_at < where.created_before)
    if after is not None:
        conditions.append(tuple_(jobs.c.created_at, jobs.c.id) < tuple_(after.created_at, after.id))
    statement = (
        select(jobs)
        .where(and_(*conditions))
        .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        .limit(limit + 1)  # one extra row says whether there is a next page
    )
    rows = (await conn.execute(statement)).all()
    page = [job_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return page, (Cursor(page[-1].created_at, page[-1].id) if more and page else None)


async def job_exists(conn: AsyncConnection, tenant_id: str, job_id: UUID) -> bool:
    row = await conn.execute(
        select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.tenant_id == tenant_id)
    )
    return row.first() is not None


async def attempts(conn: AsyncConnection, job_id: UUID) -> list[Any]:
    # The primary key (job_id, attempt) is also this listing's index.
    a = tables.job_attempts
    statement = select(a).where(a.c.job_id == job_id).order_by(a.c.attempt)
    return list((await conn.execute(statement)).all())


# --- type policies ------------------------------------------------------------------------


# A text() statement rather than a select() built per call: it is on every submission, and
# building, caching and compiling the Core expression cost more CPU than the query.
_TYPE_POLICIES = text(
    "SELECT type, max_attempts, backoff FROM job_type_policies"
    " WHERE tenant_id = :tenant_id AND type = ANY(CAST(:types AS text[]))"
)


async def type_policies(
    conn: AsyncConnection, tenant_id: str, types: Collection[str]
) -> dict[str, TypePolicy]:
    # One primary-key probe per distinct type of the submission, in one round trip.
    params = {"tenant_id": tenant_id, "types": list(types)}
    return {
        r.type: TypePolicy(
            r.max_attempts, BackoffPolicy.from_dict(r.backoff) if r.backoff else None
        )
        for r in await conn.execute(_TYPE_POLICIES, params)
    }


# --- idempotency keys ---------------------------------------------------------------------

# The race is settled by the primary key (tenant_id, key), never by a check-then-insert.
# Under READ COMMITTED a second INSERT of the same key blocks on the first transaction's
# uncommitted row: if that one commits, this one sees the conflict and returns no row (the
# caller then reads the winner's row); if it rolls back, this one inserts and wins.
# An expired row is overwritten in the same statement (DO UPDATE ... WHERE expired), so a
# key may be reused after its retention without waiting for the purge.
_CLAIM_KEY = text(
    """
    INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_ids, response, expires_at)
    VALUES (:tenant_id, :key, :request_hash, :job_ids, :response, :expires_at)
    ON CONFLICT (tenant_id, key) DO UPDATE SET
        request_hash = EXCLUDED.request_hash,
        job_ids = EXCLUDED.job_ids,
        response = EXCLUDED.response,
        created_at = now(),
        expires_at = EXCLUDED.expires_at
    WHERE idempotency_keys.expires_at <= now()
    RETURNING 1
    """
).bindparams(bindparam("response", type_=JSONB))


@dataclass(frozen=True, slots=True)
class StoredKey:
    request_hash: str
    job_ids: list[UUID]
    response: Any


async def claim_idempotency_key(
    conn: AsyncConnection,
    tenant_id: str,
    key: str,
    *,
    request_hash: str,
    job_ids: list[UUID],
    response: Any,
    expires_at: datetime,
) -> bool:
    """True if this request owns ``key`` now (new or expired); False if another does."""
    result = await conn.execute(
        _CLAIM_KEY,
        {
            "tenant_id": tenant_id,
            "key": key,
            "request_hash": request_hash,
            "job_ids": job_ids,
            "response": response,
            "expires_at": expires_at,
        },
    )
    return result.first() is not None


async def stored_key(conn: AsyncConnection, tenant_id: str, key: str) -> StoredKey | None:
    k = tables.idempotency_keys
    row = (
        await conn.execute(
            select(k.c.request_hash, k.c.job_ids, k.c.response).where(
                k.c.tenant_id == tenant_id, k.c.key == key
            )
        )
    ).one_or_none()
    return StoredKey(row.request_hash, list(row.job_ids), row.response) if row else None


_PURGE_KEYS = text(
    """
    DELETE FROM idempotency_keys WHERE (tenant_id, key) IN (
        SELECT tenant_id, key FROM idempotency_keys
        WHERE expires_at < now()
        ORDER BY expires_at
        LIMIT :limit
        -- Replicas purging at once split the rows instead of queueing on each other.
        FOR UPDATE SKIP LOCKED
    )
    """
)


async def purge_idempotency_keys(conn: AsyncConnection, limit: int = 10_000) -> int:
    """Delete up to ``limit`` expired keys (oldest first, via ix_idempotency_keys_expires_at)."""
    result = await conn.execute(_PURGE_KEYS, {"limit": limit})
    return int(result.rowcount)
