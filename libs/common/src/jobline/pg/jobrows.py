"""Rows of ``jobs`` as the pure :class:`~jobline.core.job.Job`, and jsonb array elements.

Its own module so that both the job store and the workflow store (which the job store calls
after every transition of a workflow node) map rows the same way without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jobline.core.backoff import BackoffPolicy
from jobline.core.job import AttemptError, Job, JobState
from jobline.pg.db import dumps


def json_text(value: Any) -> str | None:
    """A jsonb array element as JSON text (see queries.sql); None stays SQL NULL."""
    return None if value is None else dumps(value)


def json_texts(values: Iterable[Any]) -> list[str | None]:
    return [json_text(v) for v in values]


def job_from_row(r: Mapping[str, Any]) -> Job:
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
        unique_key=r.get("unique_key"),
        workflow_id=r.get("workflow_id"),
        waiting_on=r.get("waiting_on"),
    )


__all__ = ["job_from_row", "json_text", "json_texts"]
