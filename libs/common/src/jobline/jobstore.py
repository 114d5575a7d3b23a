"""Jobs in PostgreSQL: map rows to the pure :class:`Job`, and apply transitions durably.

Every change of state goes through :func:`apply` (or :func:`insert` for a new job): lock
the row, run the pure state machine on it, write the result with the guarded UPDATE, its
outbox messages and the attempt record, all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from jobline import outbox
from jobline.backoff import BackoffPolicy
from jobline.errors import IllegalTransition
from jobline.queries import q
from jobline.states import (
    AttemptError,
    AttemptOutcome,
    Cancelled,
    Claim,
    Event,
    Fail,
    HandBack,
    Job,
    JobState,
    LeaseExpired,
    Succeed,
    Transition,
    transition,
)

# Finished jobs stay queryable this long, then the purge may delete them.
DEFAULT_RETENTION: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Applied:
    """A transition that was written: the job before and after, and what it emitted."""

    before: Job
    after: Job
    transition: Transition


def job_from_row(row: Any) -> Job:
    r: Mapping[str, Any] = row._mapping if hasattr(row, "_mapping") else row
    return Job(
        id=r["id"],
        tenant_id=r["tenant_id"],
        type=r["type"],
        queue=r["queue"],
        state=JobState(r["state"]),
        payload=r["payload"],
        created_at=r["created_at"],
        run_at=r["run_at"],
        attempt=r["attempt"],
        max_attempts=r["max_attempts"],
        budget_start=r["budget_start"],
        backoff=BackoffPolicy.from_dict(r["backoff"]),
        timeout_seconds=r["timeout_seconds"],
        priority=r["priority"],
        metadata=r["metadata"] or {},
        sequence=r["sequence"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        lease_owner=r["lease_owner"],
        lease_expires_at=r["lease_expires_at"],
        cancel_requested_at=r["cancel_requested_at"],
        result=r["result"],
        errors=tuple(AttemptError.from_dict(e) for e in (r["errors"] or [])),
        traceparent=r["traceparent"],
    )


def _insert_params(
    job: Job, schedule_id: UUID | None, fire_time: datetime | None, idempotency_key: str | None
) -> dict[str, Any]:
    return {
        "id": job.id,
        "tenant_id": job.tenant_id,
        "type": job.type,
        "queue": job.queue,
        "state": job.state.value,
        "priority": job.priority,
        "payload": job.payload,
        "metadata": job.metadata,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "budget_start": job.budget_start,
        "backoff": job.backoff.to_dict(),
        "timeout_seconds": job.timeout_seconds,
        "run_at": job.run_at,
        "created_at": job.created_at,
        "sequence": job.sequence,
        "schedule_id": schedule_id,
        "fire_time": fire_time,
        "idempotency_key": idempotency_key,
        "traceparent": job.traceparent,
    }


async def insert(
    conn: AsyncConnection,
    submitted: Sequence[Transition],
    *,
    schedule_id: UUID | None = None,
    fire_time: datetime | None = None,
    idempotency_key: str | None = None,
) -> None:
    """Insert new jobs (the results of :func:`jobline.states.submit`) and their messages."""
    if not submitted:
        return
    await conn.execute(
        q("insert_job"),
        [_insert_params(t.job, schedule_id, fire_time, idempotency_key) for t in submitted],
    )
    await outbox.write(conn, [m for t in submitted for m in t.messages])


async def lock(conn: AsyncConnection, job_id: UUID, tenant_id: str | None = None) -> Job | None:
    """The job under a row lock (FOR UPDATE), or None; ``tenant_id`` scopes the lookup."""
    if tenant_id is None:
        result = await conn.execute(q("lock_job"), {"id": job_id})
    else:
        result = await conn.execute(q("lock_tenant_job"), {"id": job_id, "tenant_id": tenant_id})
    row = result.one_or_none()
    return job_from_row(row) if row is not None else None


async def apply(
    conn: AsyncConnection,
    job_id: UUID,
    event: Event,
    now: datetime,
    *,
    tenant_id: str | None = None,
    retention: timedelta = DEFAULT_RETENTION,
) -> Applied | None:
    """Lock, transition and save one job. None if there is no such job.

    Raises :class:`IllegalTransition` when the event does not apply to the job as it is now.
    """
    job = await lock(conn, job_id, tenant_id)
    if job is None:
        return None
    return await save(conn, job, event, transition(job, event, now), now, retention=retention)


async def save(
    conn: AsyncConnection,
    before: Job,
    event: Event,
    result: Transition,
    now: datetime,
    *,
    retention: timedelta = DEFAULT_RETENTION,
) -> Applied:
    """Write ``result`` guarded on ``before``'s state and attempt, with its messages."""
    after = result.job
    if after == before and not result.messages:
        return Applied(before, after, result)
    purge_after = (
        after.finished_at + retention if after.state.terminal and after.finished_at else None
    )
    updated = await conn.execute(
        q("save_job"),
        {
            "id": after.id,
            "state": after.state.value,
            "attempt": after.attempt,
            "budget_start": after.budget_start,
            "run_at": after.run_at,
            "started_at": after.started_at,
            "finished_at": after.finished_at,
            "lease_owner": after.lease_owner,
            "lease_expires_at": after.lease_expires_at,
            "cancel_requested_at": after.cancel_requested_at,
            "sequence": after.sequence,
            "result": after.result,
            "last_error": after.last_error.to_dict() if after.last_error else None,
            "errors": [e.to_dict() for e in after.errors],
            "purge_after": purge_after,
            "expected_state": before.state.value,
            "expected_attempt": before.attempt,
        },
    )
    if updated.rowcount != 1:
        raise IllegalTransition(f"job {after.id} changed concurrently")
    await outbox.write(conn, result.messages, job_id=after.id)
    await _record_attempt(conn, before, after, event, now)
    return Applied(before, after, result)


async def _record_attempt(
    conn: AsyncConnection, before: Job, after: Job, event: Event, now: datetime
) -> None:
    if isinstance(event, Claim):
        await conn.execute(
            q("start_attempt"),
            {
                "job_id": after.id,
                "attempt": after.attempt,
                "worker_id": event.worker_id,
                "started_at": now,
            },
        )
        return
    outcome = _outcome(event)
    if outcome is None or before.state is not JobState.RUNNING:
        return
    new_error = after.last_error if len(after.errors) > len(before.errors) else None
    error = new_error.to_dict() if new_error is not None else None
    await conn.execute(
        q("finish_attempt"),
        {
            "job_id": after.id,
            "attempt": before.attempt,
            "finished_at": now,
            "outcome": outcome.value,
            "error": error,
        },
    )


def _outcome(event: Event) -> AttemptOutcome | None:
    match event:
        case Succeed():
            return AttemptOutcome.SUCCEEDED
        case Fail(outcome=outcome):
            return outcome
        case LeaseExpired():
            return AttemptOutcome.LEASE_EXPIRED
        case Cancelled():
            return AttemptOutcome.CANCELLED
        case HandBack():
            return AttemptOutcome.HANDED_BACK
    return None


async def renew_lease(
    conn: AsyncConnection, job_id: UUID, attempt: int, worker_id: str, lease_seconds: float
) -> tuple[bool, bool]:
    """Extend a running job's lease: (still ours, cancel requested)."""
    row = (
        await conn.execute(
            q("renew_lease"),
            {
                "id": job_id,
                "attempt": attempt,
                "worker_id": worker_id,
                "lease_seconds": lease_seconds,
            },
        )
    ).one_or_none()
    if row is None:
        return False, False
    return True, row.cancel_requested_at is not None


async def expired_leases(conn: AsyncConnection, limit: int) -> list[UUID]:
    """Ids of running jobs whose lease ran out, locked for this transaction."""
    result = await conn.execute(q("expired_leases"), {"limit": limit})
    return [r.id for r in result]
