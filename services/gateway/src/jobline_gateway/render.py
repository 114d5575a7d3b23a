"""A job's API representation as a JSON-ready dict, written out by hand for the submit path.

``JobOut.of(job).model_dump(mode="json")`` builds and serialises eight pydantic models per
job; this builds the same dict directly (a unit test holds the two equal, field for field),
which is most of a small submission's own CPU.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobline.core.job import Job


def timestamp(value: datetime | None) -> str | None:
    """As pydantic writes an aware datetime in JSON mode: ISO 8601, ``Z`` for UTC."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if value.utcoffset() == UTC.utcoffset(None) else text


def job_json(job: Job) -> dict[str, Any]:
    base = f"/v1/jobs/{job.id}"
    last = job.last_error
    return {
        "id": str(job.id),
        "type": job.type,
        "queue": job.queue,
        "status": job.state.value,
        "priority": job.priority,
        "payload": job.payload,
        "metadata": job.metadata,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "attempts_left": job.attempts_left,
        "backoff": {
            "kind": job.backoff.kind.value,
            "base_seconds": float(job.backoff.base_seconds),
            "max_seconds": float(job.backoff.max_seconds),
        },
        "timeout_seconds": float(job.timeout_seconds),
        "timings": {
            "created_at": timestamp(job.created_at),
            "scheduled_for": timestamp(job.run_at),
            "started_at": timestamp(job.started_at),
            "finished_at": timestamp(job.finished_at),
        },
        "cancel_requested_at": timestamp(job.cancel_requested_at),
        "last_error": {
            "attempt": last.attempt,
            "error_class": last.error_class,
            "message": last.message,
            "outcome": last.outcome.value,
            "started_at": timestamp(last.started_at),
            "finished_at": timestamp(last.finished_at),
        }
        if last
        else None,
        "result": job.result,
        "unique_key": job.unique_key,
        "waiting_on": job.waiting_on,
        "links": {
            "self": base,
            "attempts": f"{base}/attempts",
            "cancel": f"{base}/cancel",
            "redrive": f"{base}/redrive",
        },
    }
