"""Per-tenant quotas (pure): what a tenant may hold and how fast it may submit.

Defaults come from settings; a row of ``tenant_quotas`` overrides any of them for one tenant
(the operator sets it). A refusal is :class:`QuotaExceeded`: with ``retry_after`` it is a
429 (waiting helps: jobs finish, tokens refill), without it a 422 (the request can never
fit: a batch larger than the burst, a schedule faster than the tenant may fire).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from itertools import pairwise
from typing import Any, Final

from jobline.core.errors import JoblineError
from jobline.core.schedules import ScheduleSpec, next_fires

# A cron schedule's shortest interval is read off this many upcoming fire times: enough to
# cover every field's cycle that matters (a minute of seconds, an hour of minutes).
CRON_SAMPLE: Final = 120
# What a 429 for too many unfinished jobs suggests: jobs finish continuously, so soon.
UNFINISHED_RETRY_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class Quotas:
    """One tenant's limits."""

    max_schedules: int
    min_schedule_interval_seconds: int
    max_unfinished_jobs: int
    submissions_per_second: float
    submission_burst: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{f.name} must be a number > 0, got {value!r}")


QUOTA_NAMES: Final = tuple(f.name for f in fields(Quotas))


def resolve(defaults: Quotas, overrides: Mapping[str, Any] | None) -> Quotas:
    """``defaults`` with the tenant's non-null ``overrides`` (a ``tenant_quotas`` row)."""
    if not overrides:
        return defaults
    given = {k: v for k, v in overrides.items() if k in QUOTA_NAMES and v is not None}
    return replace(defaults, **given)


class QuotaExceeded(JoblineError):
    """A tenant quota refuses this request."""

    def __init__(
        self, quota: str, message: str, *, limit: float, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.quota = quota
        self.limit = limit
        self.retry_after = retry_after


def check_schedule_count(existing: int, quotas: Quotas) -> None:
    """One more schedule must fit under ``max_schedules``."""
    if existing + 1 > quotas.max_schedules:
        raise QuotaExceeded(
            "max_schedules",
            f"the tenant has {existing} schedules; its quota is {quotas.max_schedules}",
            limit=quotas.max_schedules,
        )


def shortest_interval(spec: ScheduleSpec, now: datetime) -> float | None:
    """The shortest gap between two planned fire times from ``now`` on (None: fires once or
    never)."""
    if spec.interval_seconds is not None:
        return float(spec.interval_seconds)
    times = next_fires(spec, now, CRON_SAMPLE)
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    return min(gaps) if gaps else None


def check_schedule_interval(spec: ScheduleSpec, now: datetime, quotas: Quotas) -> None:
    """The schedule must not fire more often than ``min_schedule_interval_seconds``."""
    gap = shortest_interval(spec, now)
    if gap is not None and gap < quotas.min_schedule_interval_seconds:
        raise QuotaExceeded(
            "min_schedule_interval_seconds",
            f"the schedule fires every {gap:g}s; the tenant's shortest allowed interval is "
            f"{quotas.min_schedule_interval_seconds}s",
            limit=quotas.min_schedule_interval_seconds,
        )


def check_unfinished(unfinished: int, adding: int, quotas: Quotas) -> None:
    """``adding`` new jobs must fit under ``max_unfinished_jobs`` (a 422 if they never can)."""
    limit = quotas.max_unfinished_jobs
    if adding > limit:
        raise QuotaExceeded(
            "max_unfinished_jobs",
            f"{adding} jobs in one request exceed the tenant's {limit} unfinished jobs",
            limit=limit,
        )
    if unfinished + adding > limit:
        raise QuotaExceeded(
            "max_unfinished_jobs",
            f"the tenant has {unfinished} unfinished jobs; its quota is {limit}",
            limit=limit,
            retry_after=UNFINISHED_RETRY_SECONDS,
        )


# However far from its quota, a tenant's unfinished jobs are recounted at least this often:
# redrives add unfinished jobs outside the submission rate.
MAX_COUNT_AGE_SECONDS: Final = 30.0


def recount_needed(counted: int, admitted: int, age: float, adding: int, quotas: Quotas) -> bool:
    """Whether a gateway must recount the tenant's unfinished jobs before admitting
    ``adding``: only if, since its count ``age`` seconds ago, every gateway together could
    have brought the tenant near its quota. Growth is bounded by the shared submission rate
    (plus a burst) and what the schedules may fire; so far from the quota no count is run."""
    growth = (
        quotas.submissions_per_second + quotas.max_schedules / quotas.min_schedule_interval_seconds
    ) * age + quotas.submission_burst
    worst = counted + admitted + growth + adding
    return worst > quotas.max_unfinished_jobs or age >= MAX_COUNT_AGE_SECONDS


def check_batch_fits(adding: int, quotas: Quotas) -> None:
    """A request larger than the submission burst could never be admitted: a 422."""
    if adding > quotas.submission_burst:
        raise QuotaExceeded(
            "submission_burst",
            f"{adding} jobs in one request exceed the tenant's burst of "
            f"{quotas.submission_burst} submissions",
            limit=quotas.submission_burst,
        )


def rate_exceeded(wait: float, quotas: Quotas) -> QuotaExceeded:
    """The 429 of a tenant whose shared submission bucket is empty."""
    return QuotaExceeded(
        "submissions_per_second",
        f"the tenant's submission rate ({quotas.submissions_per_second:g}/s, shared by every "
        "gateway) is exhausted",
        limit=quotas.submissions_per_second,
        retry_after=wait,
    )
