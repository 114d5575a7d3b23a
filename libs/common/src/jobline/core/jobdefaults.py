"""Which retry policy and timeout a new job gets: one rule for every way a job is created.

A field the submitter set wins; then the tenant's policy for the job type (the analyzer's
applied recommendations, ``job_type_policies``); then the platform defaults from settings
(``JOBLINE_JOB_DEFAULT_*``), whose own defaults are :data:`PLATFORM_DEFAULTS`. A backoff given
in part (say only ``base_seconds``) takes its other fields from the policy that would apply
without it. The gateway's submit and the relay's schedule firing both resolve through here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from jobline.core.backoff import BackoffKind, BackoffPolicy


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """Attempt budget, timeout and backoff for a job that names none of them."""

    max_attempts: int
    timeout_seconds: float
    backoff: BackoffPolicy


PLATFORM_DEFAULTS: Final = JobDefaults(
    max_attempts=5,
    timeout_seconds=300.0,
    backoff=BackoffPolicy(
        kind=BackoffKind.EXPONENTIAL_JITTER, base_seconds=1.0, max_seconds=300.0, multiplier=2.0
    ),
)
"""The one place the platform's defaults are written; settings may override each."""


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
    backoff: dict[str, Any] | None = None,
    timeout_seconds: float | None = None,
) -> Resolved:
    """Explicit values, then the type policy, then the defaults.

    ``backoff`` is the submitter's partial policy: the fields it names override the policy
    that applies otherwise (a ``kind`` alone keeps that policy's delays).
    """
    policy = policy or TypePolicy()
    base = policy.backoff or defaults.backoff
    return Resolved(
        max_attempts=max_attempts or policy.max_attempts or defaults.max_attempts,
        backoff=merge_backoff(base, backoff),
        timeout_seconds=timeout_seconds or defaults.timeout_seconds,
    )


def merge_backoff(base: BackoffPolicy, given: dict[str, Any] | None) -> BackoffPolicy:
    """``base`` with the fields of ``given`` (None values ignored) applied over it.

    Raises ValueError when the result is inconsistent (e.g. max below base).
    """
    if not given:
        return base
    changes = {k: v for k, v in given.items() if v is not None}
    if "kind" in changes:
        changes["kind"] = BackoffKind(changes["kind"])
    if "base_seconds" in changes and "max_seconds" not in changes:
        # A larger base than the inherited cap lifts the cap with it rather than failing.
        changes["max_seconds"] = max(base.max_seconds, float(changes["base_seconds"]))
    return replace(base, **changes)
