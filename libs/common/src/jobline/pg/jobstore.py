"""Jobs in PostgreSQL: map rows to the pure :class:`Job`, and write transitions durably.

Two ways to write a transition, one rule:

* The locked way, for any event: lock the rows (:func:`lock_many`), let the pure state machine
  decide on them, write the results guarded on the state, attempt and sequence they were
  decided on, with their outbox rows and attempt records (:func:`save_many`), all in the
  caller's transaction. :func:`apply` does it for one job.
* The direct way, for the two transitions every job makes (a claim, a success): the worker
  decides them on the job as its work message (or its own claim) describes it and writes the
  columns they change in one statement, guarded on the same state, attempt and sequence
  (:func:`claim` and :func:`succeed`). A job that changed meanwhile does not match; the
  caller takes the locked way for it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

from jobline.core import topics
from jobline.core.errors import IllegalTransition
from jobline.core.job import Job, JobState
from jobline.core.states import Claim, Event, Succeed, Transition, attempt_outcome, transition
from jobline.pg import outbox, workflowstore
from jobline.pg.db import Conn
from jobline.pg.jobrows import job_from_row, json_text, json_texts
from jobline.pg.queries import SQL, rowcount

# Finished jobs stay queryable this long, then the purge may delete them.
DEFAULT_RETENTION: Final = timedelta(days=7)


# --- new jobs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """An Idempotency-Key the submission claims, and the answer stored for its replays."""

    tenant_id: str
    key: str
    request_hash: str
    response: Any
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Inserted:
    """What :func:`insert` did: ``authorized`` False means the API key is no longer usable;
    ``inserted`` False (authorized) means another request holds the Idempotency-Key."""

    authorized: bool
    inserted: bool


async def insert(
    conn: Conn,
    submitted: Sequence[Transition],
    *,
    schedule_id: UUID | None = None,
    fire_time: datetime | None = None,
    idempotency: IdempotencyClaim | None = None,
    idempotency_key: str | None = None,
    api_key_id: UUID | None = None,
) -> Inserted:
    """Insert new jobs (the results of :func:`jobline.core.states.submit`) and their messages.

    One statement for any number of jobs: on its own it is its own transaction. With
    ``idempotency`` the key is claimed in the same statement and nothing is inserted if
    another request holds it; ``idempotency_key`` alone only records a key (schedules use
    their fire key). With ``api_key_id`` nothing is inserted unless that key is still usable.
    """
    jobs = [t.job for t in submitted]
    messages = [(m, t.job.id) for t in submitted for m in t.messages]
    row = await SQL.fetchrow(
        conn,
        "insert_jobs",
        api_key_id=api_key_id,
        key_tenant=idempotency.tenant_id if idempotency else None,
        idempotency_key=idempotency.key if idempotency else idempotency_key,
        request_hash=idempotency.request_hash if idempotency else None,
        key_response=idempotency.response if idempotency else None,
        key_expires_at=idempotency.expires_at if idempotency else None,
        ids=[j.id for j in jobs],
        tenant_ids=[j.tenant_id for j in jobs],
        types=[j.type for j in jobs],
        queues=[j.queue for j in jobs],
        states=[j.state.value for j in jobs],
        priorities=[j.priority for j in jobs],
        payloads=json_texts(j.payload for j in jobs),
        metadatas=json_texts(j.metadata for j in jobs),
        attempts=[j.attempt for j in jobs],
        max_attempts=[j.max_attempts for j in jobs],
        budget_starts=[j.budget_start for j in jobs],
        backoffs=json_texts(j.backoff.to_dict() for j in jobs),
        timeouts=[float(j.timeout_seconds) for j in jobs],
        run_ats=[j.run_at for j in jobs],
        created_ats=[j.created_at for j in jobs],
        sequences=[j.sequence for j in jobs],
        traceparents=[j.traceparent for j in jobs],
        unique_keys=[j.unique_key for j in jobs],
        schedule_id=schedule_id,
        fire_time=fire_time,
        **outbox.columns(messages),
    )
    assert row is not None
    return Inserted(authorized=bool(row["authorized"]), inserted=bool(row["inserted"]))


# --- the locked way ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    """One transition to save: the job as locked, the event, and the state machine's result."""

    before: Job
    event: Event
    transition: Transition

    @property
    def after(self) -> Job:
        return self.transition.job


async def lock_many(
    conn: Conn, job_ids: Collection[UUID], tenant_id: str | None = None
) -> dict[UUID, Job]:
    """The jobs of ``job_ids`` that exist (of ``tenant_id``), each under a row lock."""
    if not job_ids:
        return {}
    rows = await SQL.fetch(conn, "lock_jobs", ids=list(job_ids), tenant_id=tenant_id)
    return {job.id: job for job in map(job_from_row, rows)}


async def apply(
    conn: Conn,
    job_id: UUID,
    event: Event,
    now: datetime,
    *,
    tenant_id: str | None = None,
    retention: timedelta = DEFAULT_RETENTION,
) -> Write | None:
    """Lock, transition and save one job, in the caller's transaction. None: no such job.

    Raises :class:`IllegalTransition` when the event does not apply to the job as it is now.
    """
    job = (await lock_many(conn, [job_id], tenant_id)).get(job_id)
    if job is None:
        return None
    write = Write(job, event, transition(job, event, now))
    await save_many(conn, [write], now, retention=retention)
    return write


async def save_many(
    conn: Conn,
    writes: Sequence[Write],
    now: datetime,
    *,
    retention: timedelta = DEFAULT_RETENTION,
) -> None:
    """Write transitions of jobs locked by this transaction (at most one per job).

    Each row is guarded on its ``before`` state, attempt and sequence; if any guard fails
    nothing may be kept, so this raises :class:`IllegalTransition` and the caller's
    transaction rolls back every row. Messages keep their order (by write, then within the
    transition).

    Workflow nodes among them resolve their dependants in the same transaction
    (:func:`jobline.pg.workflowstore.follow`): the transitions that decides (a child
    released or cancelled) are saved the same way, until none is left. A write of a job in
    no workflow costs nothing more.
    """
    while writes:
        await _save_many(conn, writes, now, retention=retention)
        writes = [Write(*w) for w in await workflowstore.follow(conn, writes, now)]


async def _save_many(
    conn: Conn, writes: Sequence[Write], now: datetime, *, retention: timedelta
) -> None:
    changed = [w for w in writes if not (w.after == w.before and not w.transition.messages)]
    if not changed:
        return
    if len({w.before.id for w in changed}) != len(changed):
        raise ValueError("save_many takes at most one write per job")
    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "ids", "states", "attempts", "budget_starts", "run_ats", "started_ats",
            "finished_ats", "lease_owners", "lease_expires_ats", "cancel_requested_ats",
            "sequences", "results", "last_errors", "errors", "purge_afters",
            "expected_states", "expected_attempts", "expected_sequences",
        )
    }  # fmt: skip
    for w in changed:
        before, after = w.before, w.after
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
        cols["results"].append(json_text(after.result))
        cols["last_errors"].append(
            json_text(after.last_error.to_dict() if after.last_error else None)
        )
        cols["errors"].append(json_text([e.to_dict() for e in after.errors]))
        cols["purge_afters"].append(purge_after(after, retention))
        cols["expected_states"].append(before.state.value)
        cols["expected_attempts"].append(before.attempt)
        cols["expected_sequences"].append(before.sequence)
    updated = rowcount(await SQL.execute(conn, "save_jobs", **cols))
    if updated != len(changed):
        raise IllegalTransition(
            f"{len(changed) - updated} of {len(changed)} jobs changed concurrently"
        )
    await outbox.write(conn, [(m, w.before.id) for w in changed for m in w.transition.messages])
    await _record_attempts(conn, changed, now)


def purge_after(job: Job, retention: timedelta) -> datetime | None:
    """When a finished job may be purged; None while it is not finished."""
    return job.finished_at + retention if job.state.terminal and job.finished_at else None


async def _record_attempts(conn: Conn, writes: Sequence[Write], now: datetime) -> None:
    """The record of every attempt ``writes`` end, in one INSERT (claims write none: a
    running attempt is described by its job's row)."""
    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "job_ids", "attempts", "worker_ids", "started_ats", "finished_ats", "outcomes",
            "errors",
        )
    }  # fmt: skip
    for w in writes:
        before, after = w.before, w.after
        outcome = attempt_outcome(w.event)
        if outcome is None or before.state is not JobState.RUNNING:
            continue
        new_error = after.last_error if len(after.errors) > len(before.errors) else None
        cols["job_ids"].append(after.id)
        cols["attempts"].append(before.attempt)
        cols["worker_ids"].append(before.lease_owner or "")
        cols["started_ats"].append(before.started_at or now)
        cols["finished_ats"].append(now)
        cols["outcomes"].append(outcome.value)
        cols["errors"].append(json_text(new_error.to_dict() if new_error else None))
    if cols["job_ids"]:
        await SQL.execute(conn, "record_attempts", **cols)


# --- the direct way ---------------------------------------------------------------------

CLAIM_COLUMNS: Final = frozenset(
    {"state", "attempt", "started_at", "finished_at", "lease_owner", "lease_expires_at", "sequence"}
)
"""The columns claim_jobs writes: exactly the fields a Claim changes (a unit test checks)."""

SUCCEED_COLUMNS: Final = frozenset(
    {"state", "finished_at", "lease_owner", "lease_expires_at", "sequence", "result"}
)
"""The columns succeed_jobs writes (and purge_after): exactly what a Succeed changes."""


async def claim(
    conn: Conn, claims: Sequence[tuple[Job, Claim, Transition]], now: datetime
) -> set[UUID]:
    """Write claims decided on the jobs as their work messages describe them; one statement.

    All claims share one worker and lease. Returns the ids claimed; the others changed since
    their message was written (or were never queued at that attempt).
    """
    if not claims:
        return set()
    first = claims[0][1]
    rows = await SQL.fetch(
        conn,
        "claim_jobs",
        ids=[job.id for job, _, _ in claims],
        attempts=[event.attempt for _, event, _ in claims],
        sequences=[t.job.sequence for _, _, t in claims],
        expected_sequences=[job.sequence for job, _, _ in claims],
        events=[t.messages[0].value for _, _, t in claims],
        now=now,
        worker_id=first.worker_id,
        lease_expires_at=now + timedelta(seconds=first.lease_seconds),
        events_topic=topics.EVENTS,
    )
    return {r["id"] for r in rows}


async def succeed(
    conn: Conn,
    successes: Sequence[tuple[Job, Succeed, Transition]],
    now: datetime,
    *,
    retention: timedelta = DEFAULT_RETENTION,
) -> set[UUID]:
    """Write successes decided on the jobs as this worker claimed them; one statement
    (plus, for workflow nodes, their dependants': then ``conn`` must be in a transaction).

    All share one worker. Returns the ids written; the others are no longer this worker's
    running attempt at the claim's sequence (rescued, handed back, or changed otherwise).
    """
    if not successes:
        return set()
    rows = await SQL.fetch(
        conn,
        "succeed_jobs",
        ids=[job.id for job, _, _ in successes],
        attempts=[event.attempt for _, event, _ in successes],
        sequences=[t.job.sequence for _, _, t in successes],
        started_ats=[job.started_at for job, _, _ in successes],
        results=json_texts(event.result for _, event, _ in successes),
        events=[t.messages[0].value for _, _, t in successes],
        now=now,
        purge_after=now + retention,
        worker_id=successes[0][1].worker_id,
        events_topic=topics.EVENTS,
    )
    written = {r["id"] for r in rows}
    nodes = [
        Write(job, event, result)
        for job, event, result in successes
        if job.workflow_id is not None and job.id in written
    ]
    if nodes:
        # A node's success resolves its dependants in the same transaction (the caller's).
        follow_up = [Write(*w) for w in await workflowstore.follow(conn, nodes, now)]
        await save_many(conn, follow_up, now, retention=retention)
    return written


# --- leases -----------------------------------------------------------------------------


async def renew_leases(
    conn: Conn, worker_id: str, attempts: Mapping[UUID, int], lease_seconds: float
) -> dict[UUID, bool]:
    """Extend the leases of ``attempts`` (job id -> attempt) held by ``worker_id``.

    Returns, for each lease still ours, whether its job's cancellation was requested; a job
    missing from the answer is no longer ours.
    """
    if not attempts:
        return {}
    rows = await SQL.fetch(
        conn,
        "renew_leases",
        ids=list(attempts),
        attempts=list(attempts.values()),
        worker_id=worker_id,
        lease_seconds=lease_seconds,
    )
    return {r["id"]: r["cancel_requested"] for r in rows}


async def record_progress(
    conn: Conn, job_id: UUID, attempt: int, worker_id: str, progress: dict[str, Any]
) -> bool:
    """Store a running attempt's progress; False if the attempt is no longer ours."""
    status = await SQL.execute(
        conn, "record_progress", id=job_id, attempt=attempt, worker_id=worker_id, progress=progress
    )
    return rowcount(status) == 1


async def expired_leases(conn: Conn, limit: int) -> list[UUID]:
    """Ids of running jobs whose lease ran out, locked for this transaction."""
    return [r["id"] for r in await SQL.fetch(conn, "expired_leases", limit=limit)]
