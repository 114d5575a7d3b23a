"""Retry advice: job attempt history in, recommendations kept, policies applied."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from jobline.pg.audit import Actor, record_values
from jobline_analyzer.recovery import Attempt, JobHistory


async def job_types(conn: AsyncConnection, tenant: str, since: datetime) -> list[str]:
    """Job types of a tenant with jobs updated since ``since``."""
    rows = await conn.execute(
        text(
            "SELECT DISTINCT job_type FROM analyzer_jobs"
            " WHERE tenant_id = :tenant AND updated_at >= :since ORDER BY job_type"
        ),
        {"tenant": tenant, "since": since},
    )
    return [r.job_type for r in rows]


@dataclass(frozen=True, slots=True)
class TypeHistory:
    """Recent jobs of one type and the max_attempts they ran with (most common)."""

    histories: tuple[JobHistory, ...]
    current_max_attempts: int


async def type_history(
    conn: AsyncConnection, tenant: str, job_type: str, since: datetime, limit: int
) -> TypeHistory:
    """The most recent ``limit`` jobs of a type, with their finished attempts."""
    rows = await conn.execute(
        text(
            "WITH j AS (SELECT job_id, state, max_attempts FROM analyzer_jobs"
            "  WHERE tenant_id = :tenant AND job_type = :type AND updated_at >= :since"
            "  ORDER BY updated_at DESC LIMIT :limit)"
            " SELECT j.job_id, j.state, j.max_attempts, a.attempt, a.outcome, a.error_class,"
            " a.started_at, a.finished_at"
            " FROM j LEFT JOIN analyzer_attempts a ON a.job_id = j.job_id"
            " AND a.outcome IN ('succeeded', 'failed') AND a.finished_at IS NOT NULL"
            " ORDER BY j.job_id, a.attempt"
        ),
        {"tenant": tenant, "type": job_type, "since": since, "limit": limit},
    )
    jobs: dict[UUID, tuple[str, list[Attempt]]] = {}
    max_attempts: dict[int, int] = {}
    for r in rows:
        if r.job_id not in jobs:
            jobs[r.job_id] = (r.state, [])
            max_attempts[r.max_attempts] = max_attempts.get(r.max_attempts, 0) + 1
        if r.attempt is None:
            continue
        started = r.started_at or r.finished_at
        jobs[r.job_id][1].append(
            Attempt(r.attempt, r.outcome, started, r.finished_at, r.error_class)
        )
    histories = tuple(
        JobHistory(str(job_id), job_type, state, tuple(attempts))  # type: ignore[arg-type]
        for job_id, (state, attempts) in jobs.items()
        if attempts
    )
    current = max(max_attempts, key=max_attempts.__getitem__) if max_attempts else 3
    return TypeHistory(histories, current)


_SAVE_RECOMMENDATION = text(
    "INSERT INTO analyzer_recommendations (id, tenant_id, job_type, policy, body)"
    " VALUES (:id, :tenant, :type, :policy, :body)"
    " ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = now()"
    " RETURNING applied_at"
).bindparams(bindparam("policy", type_=JSONB), bindparam("body", type_=JSONB))


async def save_recommendation(
    conn: AsyncConnection,
    *,
    rec_id: UUID,
    tenant: str,
    job_type: str,
    policy: dict[str, Any],
    body: dict[str, Any],
) -> datetime | None:
    """Keep what was shown so apply writes exactly it; returns when it was applied, if ever."""
    applied: datetime | None = (
        await conn.execute(
            _SAVE_RECOMMENDATION,
            {"id": rec_id, "tenant": tenant, "type": job_type, "policy": policy, "body": body},
        )
    ).scalar_one()
    return applied


async def load_recommendation(
    conn: AsyncConnection, rec_id: UUID, tenant: str
) -> tuple[str, dict[str, Any]] | None:
    """(job type, policy) of a tenant's recommendation, locked for apply."""
    row = (
        await conn.execute(
            text(
                "SELECT job_type, policy FROM analyzer_recommendations"
                " WHERE id = :id AND tenant_id = :tenant FOR UPDATE"
            ),
            {"id": rec_id, "tenant": tenant},
        )
    ).one_or_none()
    return None if row is None else (row.job_type, row.policy)


_APPLY_POLICY = text(
    "INSERT INTO job_type_policies"
    " (tenant_id, type, max_attempts, backoff, non_retryable_errors, source, updated_at)"
    " VALUES (:tenant, :type, :max_attempts, :backoff, :non_retryable, 'analyzer', now())"
    " ON CONFLICT (tenant_id, type) DO UPDATE SET max_attempts = EXCLUDED.max_attempts,"
    " backoff = EXCLUDED.backoff, non_retryable_errors = EXCLUDED.non_retryable_errors,"
    " source = EXCLUDED.source, updated_at = EXCLUDED.updated_at"
    " RETURNING updated_at"
).bindparams(bindparam("backoff", type_=JSONB))


async def apply_policy(
    conn: AsyncConnection, rec_id: UUID, tenant: str, job_type: str, policy: dict[str, Any]
) -> datetime:
    """Write a recommended policy as the job type's default and mark it applied."""
    updated: datetime = (
        await conn.execute(
            _APPLY_POLICY,
            {
                "tenant": tenant,
                "type": job_type,
                "max_attempts": policy["max_attempts"],
                "backoff": policy["backoff"],
                "non_retryable": list(policy["non_retryable_errors"]),
            },
        )
    ).scalar_one()
    await conn.execute(
        text("UPDATE analyzer_recommendations SET applied_at = :at WHERE id = :id"),
        {"at": updated, "id": rec_id},
    )
    return updated


_RECORD_AUDIT = text(
    "INSERT INTO audit_log (key_id, tenant_id, action, target, address, detail)"
    " VALUES (:key_id, :tenant_id, :action, :target, :address, :detail)"
).bindparams(bindparam("detail", type_=JSONB))


async def record_audit(
    conn: AsyncConnection, who: Actor, action: str, target: str, detail: dict[str, Any]
) -> None:
    """An audit entry in the apply's own transaction (jobline.pg.audit's row, through
    SQLAlchemy while the analyzer's store is on it)."""
    await conn.execute(_RECORD_AUDIT, record_values(who, action, target, detail))
