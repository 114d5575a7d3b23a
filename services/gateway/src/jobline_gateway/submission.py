"""Accepting jobs: defaults, the state machine's submit, and idempotency, in one statement.

Nothing is published here. The job rows and their outbox rows are written by one statement
(:func:`jobline.pg.jobstore.insert`), which is its own transaction: the answer goes out only
after it committed. An Idempotency-Key is claimed by the same statement, so concurrent
requests with one key serialise on its primary key and exactly one of them inserts jobs; the
others replay its stored answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson

from jobline.api.jobs import JobOut, JobSpec
from jobline.core import jobdefaults, states
from jobline.core.job import Job, JobState
from jobline.core.jobdefaults import JobDefaults, TypePolicy
from jobline.core.states import Transition
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
) -> Accepted:
    """Insert ``specs`` as new jobs, or replay the key's original answer.

    ``fingerprint`` (the request's hash) is needed only with an ``idempotency_key``;
    ``batch`` says the specs are a batch body's ``jobs`` (errors point into it).
    Every job must pass admission (known type, declared queue, valid payload) first;
    ``accept_undeclared`` (dev/test only) declares the queues it names instead.
    """
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
    answer = [JobOut.of(t.job).model_dump(mode="json") for t in submitted]
    claim = None
    if idempotency_key is not None:
        assert fingerprint is not None
        claim = jobstore.IdempotencyClaim(
            tenant_id=tenant_id,
            key=idempotency_key,
            request_hash=fingerprint,
            response=answer,
            expires_at=now + key_retention,
        )
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
