"""Accepting jobs: defaults, the state machine's submit, and idempotency, in one statement.

Nothing is published here. The job rows and their outbox rows are written by one statement
(:func:`jobline.pg.jobstore.insert`), which is its own transaction: the answer goes out only
after it committed. An Idempotency-Key is claimed by the same statement, so concurrent
requests with one key serialise on its primary key and exactly one of them inserts jobs; the
others replay its stored answer.

A submission with ``unique`` keys (:mod:`jobline.core.unique`) takes another path, in one
transaction: lock the keys, read their holders, let the pure policy decide, then cancel what
``replace`` replaces and insert what is new with the same statement. Submissions without
``unique`` never take it: their cost is the one statement, as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson

from jobline.api.jobs import JobOut, JobSpec
from jobline.core import jobdefaults, states, unique
from jobline.core.job import Job, JobState
from jobline.core.jobdefaults import JobDefaults, TypePolicy
from jobline.core.states import Cancel, Transition
from jobline.pg import jobstore
from jobline.pg.db import Database
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway import registry_admission, store
from jobline_gateway.catalog import Catalog
from jobline_gateway.deps import revoked
from jobline_gateway.registry_cache import RegistryCache


@dataclass(frozen=True, slots=True)
class Accepted:
    """What to answer: the jobs' representations, and whether this is a replay."""

    jobs: list[dict[str, Any]]
    replayed: bool
    types: list[str]
    # Debounced: every job answered is an existing one (unique key held), none was created.
    existing: bool = False


def request_hash(endpoint: str, body: Any) -> str:
    """Canonical JSON of the validated request: whitespace and key order do not matter."""
    canonical = orjson.dumps([endpoint, body], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def build_job(
    spec: JobSpec,
    tenant_id: str,
    now: datetime,
    *,
    policy: TypePolicy | None,
    defaults: JobDefaults,
    traceparent: str | None,
    at: str = "",
    queue: str | None = None,
) -> Job:
    """The new job: explicit request fields win, then the tenant's type policy, then defaults.

    ``at`` is where the spec sits in the request body (``jobs.3`` in a batch), for errors;
    ``queue`` is the queue admission chose (the spec's, else its type's).
    """
    if spec.run_at is not None:
        run_at = spec.run_at
    elif spec.delay_seconds is not None:
        run_at = now + timedelta(seconds=spec.delay_seconds)
    else:
        run_at = now
    try:
        resolved = jobdefaults.resolve(
            defaults,
            policy,
            max_attempts=spec.max_attempts,
            backoff=spec.backoff.given() if spec.backoff is not None else None,
            timeout_seconds=spec.timeout_seconds,
        )
    except ValueError as exc:  # a partial backoff that contradicts the inherited one
        field = f"{at}.backoff" if at else "backoff"
        raise ProblemError(
            422,
            f"Invalid backoff: {exc}.",
            kind="validation",
            title="Invalid request",
            errors=[
                FieldError(
                    field=field,
                    location="body",
                    pointer="/" + field.replace(".", "/"),
                    message=str(exc),
                )
            ],
        ) from None
    return Job(
        id=uuid4(),
        tenant_id=tenant_id,
        type=spec.type,
        queue=queue or spec.queue,
        state=JobState.QUEUED,  # submit() decides queued or scheduled
        payload=spec.payload,
        created_at=now,
        run_at=run_at,
        max_attempts=resolved.max_attempts,
        backoff=resolved.backoff,
        timeout_seconds=resolved.timeout_seconds,
        priority=spec.priority,
        metadata=spec.metadata,
        traceparent=traceparent,
        unique_key=spec.unique.key if spec.unique is not None else None,
    )


async def submit(  # noqa: PLR0917 - the request's parts, each its own name
    db: Database,
    catalog: Catalog,
    registry_cache: RegistryCache,
    defaults: JobDefaults,
    tenant_id: str,
    api_key_id: UUID,
    specs: Sequence[JobSpec],
    *,
    now: datetime,
    idempotency_key: str | None,
    fingerprint: str | None,
    key_retention: timedelta,
    traceparent: str | None = None,
    batch: bool = False,
    accept_undeclared: bool = False,
    retention: timedelta = jobstore.DEFAULT_RETENTION,
) -> Accepted:
    """Insert ``specs`` as new jobs, or replay the key's original answer.

    ``fingerprint`` (the request's hash) is needed only with an ``idempotency_key``;
    ``batch`` says the specs are a batch body's ``jobs`` (errors point into it).
    Every job must pass admission (known type, declared queue, valid payload) first;
    ``accept_undeclared`` (dev/test only) declares the queues it names instead.
    ``retention`` is how long a job that ``replace`` cancels stays queryable.
    """
    _distinct_keys(specs, batch=batch)
    queues = await registry_admission.admit(
        registry_cache,
        tenant_id,
        [
            registry_admission.Candidate.of(s, f"/jobs/{i}" if batch else "")
            for i, s in enumerate(specs)
        ],
        accept_undeclared=accept_undeclared,
    )
    # The types whose defaults the request leaves open; a spec that sets both max_attempts
    # and backoff takes nothing from a policy.
    open_types = {s.type for s in specs if s.max_attempts is None or s.backoff is None}
    policies = await catalog.policies(tenant_id, open_types) if open_types else {}
    submitted: list[Transition] = [
        states.submit(
            build_job(
                s,
                tenant_id,
                now,
                policy=policies.get(s.type),
                defaults=defaults,
                traceparent=traceparent,
                at=f"jobs.{i}" if batch else "",
                queue=queues[i],
            ),
            now,
        )
        for i, s in enumerate(specs)
    ]
    if any(s.unique is not None for s in specs):
        return await _submit_unique(
            db,
            catalog,
            tenant_id,
            api_key_id,
            specs,
            submitted,
            now=now,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            key_retention=key_retention,
            batch=batch,
            retention=retention,
        )
    answer = [JobOut.of(t.job).model_dump(mode="json") for t in submitted]
    claim = _claim(tenant_id, idempotency_key, fingerprint, answer, now + key_retention)
    async with db.connection() as conn:
        inserted = await jobstore.insert(conn, submitted, idempotency=claim, api_key_id=api_key_id)
        if not inserted.authorized:
            catalog.forget_key(api_key_id)
            raise revoked()
        if not inserted.inserted:
            assert idempotency_key is not None
            assert fingerprint is not None
            return await _replay(conn, tenant_id, idempotency_key, fingerprint)
    return Accepted(answer, replayed=False, types=[t.job.type for t in submitted])


def _claim(
    tenant_id: str,
    key: str | None,
    fingerprint: str | None,
    answer: list[dict[str, Any]],
    expires_at: datetime,
) -> jobstore.IdempotencyClaim | None:
    if key is None:
        return None
    assert fingerprint is not None
    return jobstore.IdempotencyClaim(
        tenant_id=tenant_id,
        key=key,
        request_hash=fingerprint,
        response=answer,
        expires_at=expires_at,
    )


# --- unique jobs ------------------------------------------------------------------------


def _unique_of(spec: JobSpec) -> unique.Unique | None:
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


def _distinct_keys(specs: Sequence[JobSpec], *, batch: bool) -> None:
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


async def _submit_unique(  # noqa: PLR0917 - submit's arguments, passed on
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
    uniques = [_unique_of(s) for s in specs]
    keys = unique.lock_order([u.key if u else None for u in uniques])
    conflict: ProblemError | None = None
    answer: list[dict[str, Any]] = []
    new: list[Transition] = []
    try:
        async with db.transaction() as conn:
            await jobstore.lock_unique_keys(conn, tenant_id, keys)
            # A retry of a request that was accepted replays its answer; the jobs it created
            # hold their keys and would answer it with a conflict.
            if idempotency_key is not None and await store.live_key(
                conn, tenant_id, idempotency_key
            ):
                raise _KeyHeld
            holders = await jobstore.unique_holders(conn, tenant_id, keys)
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
                    claim=_claim(
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
            return await _replay(conn, tenant_id, idempotency_key, fingerprint)
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
            await jobstore.note_cancel_reason(conn, [job.id], f"replaced by job {successor}")
    if not new:
        return
    inserted = await jobstore.insert(conn, new, idempotency=claim, api_key_id=api_key_id)
    if not inserted.authorized:
        catalog.forget_key(api_key_id)
        raise revoked()
    if not inserted.inserted:
        raise _KeyHeld


async def _replay(conn: Any, tenant_id: str, key: str, fingerprint: str) -> Accepted:
    # The insert found the key taken by a committed row (it waited for its owner to commit);
    # this new statement sees it.
    stored = await store.stored_key(conn, tenant_id, key)
    if stored is None:  # expired and purged between the two statements: ask to retry
        raise ProblemError(409, "The Idempotency-Key is being reused; retry the request.")
    if stored.request_hash != fingerprint:
        raise ProblemError(
            422,
            "This Idempotency-Key was used with a different request body.",
            kind="idempotency-key-reused",
            errors=[
                FieldError(
                    field="Idempotency-Key",
                    location="header",
                    message="already used with a different request body",
                )
            ],
        )
    return Accepted(list(stored.response), replayed=True, types=[])
