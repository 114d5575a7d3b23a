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

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from jobline.api.jobs import JobOut, JobSpec
from jobline.core import jobdefaults, states
from jobline.core.job import Job, JobState
from jobline.core.jobdefaults import JobDefaults, TypePolicy
from jobline.core.states import Transition
from jobline.pg import jobstore
from jobline.pg.db import Database
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway import registry_admission, uniqueness
from jobline_gateway.catalog import Catalog
from jobline_gateway.deps import revoked
from jobline_gateway.idempotency import Accepted, claim, replay
from jobline_gateway.registry_cache import RegistryCache


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
    uniqueness.distinct_keys(specs, batch=batch)
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
        return await uniqueness.submit_unique(
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
    key_claim = claim(tenant_id, idempotency_key, fingerprint, answer, now + key_retention)
    async with db.connection() as conn:
        inserted = await jobstore.insert(
            conn, submitted, idempotency=key_claim, api_key_id=api_key_id
        )
        if not inserted.authorized:
            catalog.forget_key(api_key_id)
            raise revoked()
        if not inserted.inserted:
            assert idempotency_key is not None
            assert fingerprint is not None
            return await replay(conn, tenant_id, idempotency_key, fingerprint)
    return Accepted(answer, replayed=False, types=[t.job.type for t in submitted])
