"""Which retry policy and timeout a new job gets: one rule for every way a job is created.

A field the submitter set wins; then the tenant's policy for the job type (the analyzer's
applied recommendations, ``job_type_policies``); then the platform defaults from settings.
The gateway's submit and the relay's schedule firing both resolve through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobline.core.backoff import BackoffPolicy
from jobline.core.states import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """The platform defaults (``JOBLINE_JOB_DEFAULT_*``)."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)


@dataclass(frozen=True, slots=True)
class TypePolicy:
    """A tenant's stored defaults for one job type; either part may be unset."""

    max_attempts: int | None = None
    backoff: BackoffPolicy | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    max_attempts: int
    backoff: BackoffPolicy
    timeout_seconds: float


def resolve(
    defaults: JobDefaults,
    policy: TypePolicy | None,
    *,
    max_attempts: int | None = None,
    backoff: BackoffPolicy | None = None,
    timeout_seconds: float | None = None,
) -> Resolved:
    """Explicit values, then the type policy, then the defaults."""
    policy = policy or TypePolicy()
    return Resolved(
        max_attempts=max_attempts or policy.max_attempts or defaults.max_attempts,
        backoff=backoff or policy.backoff or defaults.backoff,
        timeout_seconds=timeout_seconds or defaults.timeout_seconds,
    )
