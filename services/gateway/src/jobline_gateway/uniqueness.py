"""Unique jobs in the gateway: at most one unfinished job per key (:mod:`jobline.core.unique`).

A submission with ``unique`` keys takes this path, in one transaction: lock the keys, read
their holders, let the pure policy decide, then cancel what ``replace`` replaces and insert
what is new with the submission's statement. Submissions without ``unique`` never come here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from jobline.api.jobs import JobOut, JobSpec
from jobline.core import states, unique
from jobline.core.job import Job
from jobline.core.states import Cancel, Transition
from jobline.pg import jobstore, uniquekeys
from jobline.pg.db import Database
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway import store
from jobline_gateway.catalog import Catalog
from jobline_gateway.deps import revoked
from jobline_gateway.idempotency import Accepted, claim, replay

# --- unique jobs ------------------------------------------------------------------------


def unique_of(spec: JobSpec) -> unique.Unique | None:
    if spec.unique is None:
        return None
    window = spec.unique.window_seconds
    return unique.Unique(
        key=spec.unique.key,
        policy=unique.Policy(spec.unique.policy.value),
        window=timedelta(seconds=window) if window is not None else None,
    )


def _key_field(i: int, *, batch: bool) -> tuple[str, str]:
    """The dotted name and JSON pointer of spec ``i``'s unique key."""
    field = f"jobs.{i}.unique.key" if batch else "unique.key"
    return field, "/" + field.replace(".", "/")


def distinct_keys(specs: Sequence[JobSpec], *, batch: bool) -> None:
    """Two jobs of one batch with one unique key could never both be accepted: 422."""
    pairs = unique.duplicates(s.unique.key if s.unique else None for s in specs)
    if not pairs:
        return
    errors = []
    for first, later in pairs:
        for i, other in ((first, later), (later, first)):
            field, pointer = _key_field(i, batch=batch)
            errors.append(
                FieldError(
                    field=field,
                    location="body",
                    pointer=pointer,
                    message=f"the same unique key as jobs.{other}",
                )
            )
    names = ", ".join(f"jobs.{a} and jobs.{b}" for a, b in pairs)
    raise ProblemError(
        422,
        f"Jobs of one batch share a unique key: {names}.",
        kind="validation",
        title="Invalid request",
        errors=errors,
    )


class _KeyHeld(Exception):
    """Another request holds the Idempotency-Key: roll back, then replay its answer."""


def _holder(job: Job | None) -> unique.Holder | None:
    return None if job is None else unique.Holder(job.id, job.state, job.created_at)


def _unique_conflict(i: int, key: str, reject: unique.Reject, *, batch: bool) -> ProblemError:
    holder = reject.holder.id
    field, pointer = _key_field(i, batch=batch)
    return ProblemError(
        409,
        f"Job {holder} holds the unique key {key!r}; {reject.why}.",
        kind="unique-key-held",
        title="Unique key held",
        errors=[
            FieldError(field=field, location="body", pointer=pointer, message=f"held by {holder}")
        ],
        headers={"Location": f"/v1/jobs/{holder}"},
        job_id=holder,
    )


async def submit_unique(  # noqa: PLR0917 - submit's arguments, passed on
    db: Database,
    catalog: Catalog,
    tenant_id: str,
    api_key_id: UUID,
    specs: Sequence[JobSpec],
    submitted: list[Transition],
    *,
    now: datetime,
    idempotency_key: str | None,
    fingerprint: str | None,
    key_retention: timedelta,
    batch: bool,
    retention: timedelta,
) -> Accepted:
    uniques = [unique_of(s) for s in specs]
    keys = unique.lock_order([u.key if u else None for u in uniques])
    conflict: ProblemError | None = None
    answer: list[dict[str, Any]] = []
    new: list[Transition] = []
    try:
        async with db.transaction() as conn:
            await uniquekeys.lock_unique_keys(conn, tenant_id, keys)
            # A retry of a request that was accepted replays its answer; the jobs it created
            # hold their keys and would answer it with a conflict.
            if idempotency_key is not None and await store.live_key(
                conn, tenant_id, idempotency_key
            ):
                raise _KeyHeld
            holders = await uniquekeys.unique_holders(conn, tenant_id, keys)
            replaced: list[tuple[Job, UUID]] = []
            for i, (u, t) in enumerate(zip(uniques, submitted, strict=True)):
                held = holders.get(u.key) if u is not None else None
                if u is None or held is None:
                    decision: unique.Decision = unique.Create()
                else:
                    decision = unique.decide(u, _holder(held), now)
                match decision:
                    case unique.Reject():
                        assert u is not None
                        # Answered after the transaction ends cleanly (nothing was written):
                        # the connection goes back to the pool instead of being dropped.
                        conflict = _unique_conflict(i, u.key, decision, batch=batch)
                        break
                    case unique.Existing():
                        assert held is not None
                        answer.append(JobOut.of(held).model_dump(mode="json"))
                        continue
                    case unique.Replace():
                        assert held is not None
                        replaced.append((held, t.job.id))
                new.append(t)
                answer.append(JobOut.of(t.job).model_dump(mode="json"))
            if conflict is None:
                await _write_unique(
                    conn,
                    catalog,
                    replaced,
                    new,
                    claim=claim(
                        tenant_id, idempotency_key, fingerprint, answer, now + key_retention
                    ),
                    api_key_id=api_key_id,
                    now=now,
                    retention=retention,
                )
    except _KeyHeld:
        assert idempotency_key is not None
        assert fingerprint is not None
        async with db.connection() as conn:
            return await replay(conn, tenant_id, idempotency_key, fingerprint)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != UNIQUE_INDEX:
            raise
        # A writer that takes no key lock (a redrive) made a job with one of the keys
        # unfinished between our read and our insert.
        raise ProblemError(
            409,
            "A unique key of this submission was taken meanwhile; retry the request.",
            kind="unique-key-held",
            title="Unique key held",
        ) from None
    if conflict is not None:
        raise conflict
    return Accepted(answer, replayed=False, types=[t.job.type for t in new], existing=not new)


UNIQUE_INDEX = "uq_jobs_unique_key"


async def _write_unique(
    conn: Any,
    catalog: Catalog,
    replaced: list[tuple[Job, UUID]],
    new: list[Transition],
    *,
    claim: jobstore.IdempotencyClaim | None,
    api_key_id: UUID,
    now: datetime,
    retention: timedelta,
) -> None:
    """Cancel the waiting holders ``replace`` replaces (each noting its successor), then
    insert the new jobs; raises to roll it all back."""
    if replaced:
        event = Cancel()
        writes = [
            jobstore.Write(job, event, states.transition(job, event, now)) for job, _ in replaced
        ]
        await jobstore.save_many(conn, writes, now, retention=retention)
        for job, successor in replaced:
            await uniquekeys.note_cancel_reason(conn, [job.id], f"replaced by job {successor}")
    if not new:
        return
    inserted = await jobstore.insert(conn, new, idempotency=claim, api_key_id=api_key_id)
    if not inserted.authorized:
        catalog.forget_key(api_key_id)
        raise revoked()
    if not inserted.inserted:
        raise _KeyHeld
