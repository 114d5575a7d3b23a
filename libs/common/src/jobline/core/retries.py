"""Whether a failed attempt is retried, and when. One decision, pure, clock as a parameter.

The job's own budget and backoff apply, capped by what the handler registered with
(:class:`HandlerLimits`: ``@worker.job(max_attempts=..., backoff=...)``); a handler's
``Retry(after=)`` names the time itself. Jitter is seeded with the job id and attempt, so
the same failure always gives the same delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobline.core.backoff import BackoffPolicy, next_retry_at
from jobline.core.job import Job


@dataclass(frozen=True, slots=True)
class HandlerLimits:
    """A handler's caps: at most ``max_attempts`` in all; ``backoff`` replaces the job's."""

    max_attempts: int | None = None
    backoff: BackoffPolicy | None = None


NO_LIMITS = HandlerLimits()


def retry_at(
    job: Job,
    now: datetime,
    *,
    retryable: bool = True,
    retry_after: float | None = None,
    limits: HandlerLimits = NO_LIMITS,
) -> datetime | None:
    """When the running attempt of ``job``, which failed at ``now``, is tried again.

    None: it is not (non-retryable, or the budget is spent).
    """
    if not retryable:
        return None
    budget = job.max_attempts
    if limits.max_attempts is not None:
        budget = min(budget, limits.max_attempts)
    if job.attempts_used >= budget:
        return None
    if retry_after is not None:
        return now + timedelta(seconds=max(retry_after, 0.0))
    policy = limits.backoff or job.backoff
    rng = random.Random(f"{job.id}:{job.attempt}")
    return next_retry_at(policy, job.attempts_used, now, rng)
