"""Accepting jobs: defaults, the state machine's submit, and idempotency, in one transaction.

Nothing is published here. The job rows and their outbox rows commit together; the relay
publishes the outbox. An Idempotency-Key row is claimed in the same transaction, before the
jobs are inserted, so concurrent requests with one key serialise on its primary key and
exactly one of them inserts jobs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncConnection

from jobline.api.jobs import JobOut, JobSpec
from jobline.core import jobdefaults, states
from jobline.core.backoff import BackoffPolicy
from jobline.core.states import Job, JobState, Transition
from jobline.pg import jobstore
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway import store
from jobline_gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Accepted:
    """What to answer: the jobs' representations, and whether this is a replay."""

    jobs: list[dict[str, Any]]
    replayed: bool
    types: list[str]


def request_hash(endpoint: str, body: Any) -> str:
    """Canonical JSON of the validated request: whitespace and key order do not matter."""
    canonical = json.dumps([endpoint, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_job(
    spec: JobSpec,
    tenant_id: str,
    now: datetime,
    *,
    policy: jobdefaults.TypePolicy | None,
    settings: Settings,
    traceparent: str | None,
) -> Job:
    """The new job: explicit request fields win, then the tenant's type policy, then defaults."""
    if spec.run_at is not None:
        run_at = spec.run_at
    elif spec.delay_seconds is not None:
        run_at = now + timedelta(seconds=spec.delay_seconds)
    else:
        run_at = now
    resolved = jobdefaults.resolve(
        settings.job_defaults,
        policy,
        max_attempts=spec.max_attempts,
        backoff=BackoffPolicy.from_dict(spec.backoff.model_dump()) if spec.backoff else None,
        timeout_seconds=spec.timeout_seconds,
    )
    return Job(
        id=uuid4(),
        tenant_id=tenant_id,
        type=spec.type,
        queue=spec.queue,
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


async def submit(
    conn: AsyncConnection,
    settings: Settings,
    tenant_id: str,
    specs: Sequence[JobSpec],
    *,
    now: datetime,
    idempotency_key: str | None,
    fingerprint: str,
    traceparent: str | None = None,
) -> Accepted:
    """Insert ``specs`` as new jobs in one transaction, or replay the key's original answer.

    Works in ``conn``'s transaction (the request's, begun by its authentication) and commits
    it; on an error it leaves the rollback to the connection's owner.
    """
    policies = await _policies(conn, tenant_id, specs)
    submitted: list[Transition] = [
        states.submit(
            build_job(
                s,
                tenant_id,
                now,
                policy=policies.get(s.type),
                settings=settings,
                traceparent=traceparent,
            ),
            now,
        )
        for s in specs
    ]
    answer = [JobOut.of(t.job).model_dump(mode="json") for t in submitted]
    if idempotency_key is not None:
        won = await store.claim_idempotency_key(
            conn,
            tenant_id,
            idempotency_key,
            request_hash=fingerprint,
            job_ids=[t.job.id for t in submitted],
            response=answer,
            expires_at=now + timedelta(seconds=settings.idempotency_retention_seconds),
        )
        if not won:
            return await _replay(conn, tenant_id, idempotency_key, fingerprint)
    await jobstore.insert(conn, submitted, idempotency_key=idempotency_key)
    await conn.commit()
    return Accepted(answer, replayed=False, types=[t.job.type for t in submitted])


async def _policies(
    conn: AsyncConnection, tenant_id: str, specs: Sequence[JobSpec]
) -> dict[str, jobdefaults.TypePolicy]:
    """The tenant's policies for the types whose defaults the request leaves open.

    A spec that sets both max_attempts and backoff takes nothing from a policy, so a
    request made only of such specs skips the lookup (one statement fewer).
    """
    open_types = {s.type for s in specs if s.max_attempts is None or s.backoff is None}
    if not open_types:
        return {}
    return await store.type_policies(conn, tenant_id, open_types)


async def _replay(conn: AsyncConnection, tenant_id: str, key: str, fingerprint: str) -> Accepted:
    # The claim returned no row, so a live row for this key is committed: the INSERT
    # waited for its owner to commit. READ COMMITTED lets this new statement see it.
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
