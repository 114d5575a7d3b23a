"""Jobs in PostgreSQL: map rows to the pure :class:`Job`, and apply transitions durably.

Every change of state goes through :func:`apply` (or :func:`insert` for a new job): lock
the row, run the pure state machine on it, write the result with the guarded UPDATE, its
outbox messages and the attempt record, all in the caller's transaction.

The worker's hot path uses the set-based variants :func:`lock_many` and :func:`save_many`:
the same lock, the same pure decision per job and the same per-row guard, but a whole batch
of jobs in a fixed number of statements (round trips) instead of four per job.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from jobline.core.backoff import BackoffPolicy
from jobline.core.errors import IllegalTransition
from jobline.core.states import (
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
from jobline.pg import outbox
from jobline.pg.queries import q

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


async def insert(
    conn: AsyncConnection,
    submitted: Sequence[Transition],
    *,
    schedule_id: UUID | None = None,
    fire_time: datetime | None = None,
    idempotency_key: str | None = None,
) -> None:
    """Insert new jobs (the results of :func:`jobline.states.submit`) and their messages.

    One statement (``insert_jobs``: the job rows and their outbox rows) for any number of jobs.
    """
    if not submitted:
        return
    jobs = [t.job for t in submitted]
    messages = [(m, t.job.id) for t in submitted for m in t.messages]
    await conn.execute(
        q("insert_jobs"),
        {
            "ids": [j.id for j in jobs],
            "tenant_ids": [j.tenant_id for j in jobs],
            "types": [j.type for j in jobs],
            "queues": [j.queue for j in jobs],
            "states": [j.state.value for j in jobs],
            "priorities": [j.priority for j in jobs],
            "payloads_json": [json.dumps(j.payload) for j in jobs],
            "metadata_json": [json.dumps(j.metadata) for j in jobs],
            "attempts": [j.attempt for j in jobs],
            "max_attempts_list": [j.max_attempts for j in jobs],
            "budget_starts": [j.budget_start for j in jobs],
            "backoffs_json": [json.dumps(j.backoff.to_dict()) for j in jobs],
            "timeouts": [float(j.timeout_seconds) for j in jobs],
            "run_ats": [j.run_at for j in jobs],
            "created_ats": [j.created_at for j in jobs],
            "sequences": [j.sequence for j in jobs],
            "traceparents": [j.traceparent for j in jobs],
            "schedule_id": schedule_id,
            "fire_time": fire_time,
            "idempotency_key": idempotency_key,
            **outbox.columns(messages),
        },
    )


async def lock(conn: AsyncConnection, job_id: UUID, tenant_id: str | None = None) -> Job | None:
    """The job under a row lock (FOR UPDATE), or None; ``tenant_id`` scopes the lookup."""
    if tenant_id is None:
        result = await conn.execute(q("lock_job"), {"id": job_id})
    else:
        result = await conn.execute(q("lock_tenant_job"), {"id": job_id, "tenant_id": tenant_id})
    row = result.one_or_none()
    return job_from_row(row) if row is not None else None


async def lock_many(conn: AsyncConnection, job_ids: Collection[UUID]) -> dict[UUID, Job]:
    """The jobs of ``job_ids`` that exist, each under a row lock, taken in id order."""
    if not job_ids:
        return {}
    result = await conn.execute(q("lock_jobs"), {"ids": list(job_ids)})
    return {job.id: job for job in map(job_from_row, result)}


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
    purge_after = _purge_after(after, retention)
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


@dataclass(frozen=True, slots=True)
class Write:
    """One transition to save: the job as locked, the event, and the state machine's result."""

    before: Job
    event: Event
    transition: Transition


async def save_many(
    conn: AsyncConnection,
    writes: Sequence[Write],
    now: datetime,
    *,
    retention: timedelta = DEFAULT_RETENTION,
) -> list[Applied]:
    """:func:`save` for many jobs at once (at most one write per job), in four statements.

    Each row is guarded on its own ``before`` state and attempt, exactly as :func:`save`;
    if any guard fails nothing may be kept, so this raises :class:`IllegalTransition` and
    the caller's transaction rolls back every row. Messages keep their order (by write,
    then within the transition).
    """
    changed = [
        w for w in writes if not (w.transition.job == w.before and not w.transition.messages)
    ]
    applied = [Applied(w.before, w.transition.job, w.transition) for w in writes]
    if not changed:
        return applied
    if len({w.before.id for w in changed}) != len(changed):
        raise ValueError("save_many takes at most one write per job")
    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "ids", "states", "attempts", "budget_starts", "run_ats", "started_ats",
            "finished_ats", "lease_owners", "lease_expires_ats", "cancel_requested_ats",
            "sequences", "results_json", "last_errors_json", "errors_json", "purge_afters",
            "expected_states", "expected_attempts",
        )
    }  # fmt: skip
    for w in changed:
        before, after = w.before, w.transition.job
        cols["ids"].append(after.id)
        cols["states"].append(after.state.value)
        cols["attempts"].append(after.attempt)
        cols["budget_starts"].append(after.budget_start)
        cols["run_ats"].append(after.run_at)
        cols["started_ats"].append(after.started_at)
        cols["finished_ats"].append(after.finished_at)
        cols["lease_owners"].append(after.lease_owner)
        cols["lease_expires_ats"].append(after.lease_expires_at)
        cols["cancel_requested_ats"].append(after.cancel_requested_at)
        cols["sequences"].append(after.sequence)
        # json.dumps(None) is 'null': the same jsonb save_job's JSONB binds store for None.
        cols["results_json"].append(json.dumps(after.result))
        last_error = after.last_error.to_dict() if after.last_error else None
        cols["last_errors_json"].append(json.dumps(last_error))
        cols["errors_json"].append(json.dumps([e.to_dict() for e in after.errors]))
        cols["purge_afters"].append(_purge_after(after, retention))
        cols["expected_states"].append(before.state.value)
        cols["expected_attempts"].append(before.attempt)
    updated = await conn.execute(q("save_jobs"), cols)
    if updated.rowcount != len(changed):
        raise IllegalTransition(
            f"{len(changed) - updated.rowcount} of {len(changed)} jobs changed concurrently"
        )
    await outbox.write_many(
        conn, [(m, w.before.id) for w in changed for m in w.transition.messages]
    )
    await _record_attempts(conn, changed, now)
    return applied


def _purge_after(after: Job, retention: timedelta) -> datetime | None:
    return after.finished_at + retention if after.state.terminal and after.finished_at else None


async def _record_attempts(conn: AsyncConnection, writes: Sequence[Write], now: datetime) -> None:
    """:func:`_record_attempt` for many writes: one INSERT for claims, one UPDATE for ends."""
    starts: dict[str, list[Any]] = {
        "job_ids": [],
        "attempts": [],
        "worker_ids": [],
        "started_ats": [],
    }
    ends: dict[str, list[Any]] = {
        "job_ids": [], "attempts": [], "finished_ats": [], "outcomes": [], "errors_json": []
    }  # fmt: skip
    for w in writes:
        before, after, event = w.before, w.transition.job, w.event
        if isinstance(event, Claim):
            starts["job_ids"].append(after.id)
            starts["attempts"].append(after.attempt)
            starts["worker_ids"].append(event.worker_id)
            starts["started_ats"].append(now)
            continue
        outcome = _outcome(event)
        if outcome is None or before.state is not JobState.RUNNING:
            continue
        new_error = after.last_error if len(after.errors) > len(before.errors) else None
        ends["job_ids"].append(after.id)
        ends["attempts"].append(before.attempt)
        ends["finished_ats"].append(now)
        ends["outcomes"].append(outcome.value)
        ends["errors_json"].append(json.dumps(new_error.to_dict() if new_error else None))
    if starts["job_ids"]:
        await conn.execute(q("start_attempts"), starts)
    if ends["job_ids"]:
        await conn.execute(q("finish_attempts"), ends)


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
