"""When a failed webhook delivery is tried again, and when its endpoint is disabled (pure).

Exponential backoff with equal jitter (half the delay fixed, half random: retries spread
out, yet never come back at once), capped, like Svix's and Stripe's schedules but
configurable; the clock and the random source are parameters, as in River's
``NextRetryAt(now, job)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobline.core.backoff import exponential


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` tries per delivery; ``base``·2^(n-1) seconds (capped) between them;
    the endpoint is disabled after ``disable_after`` deliveries in a row failed for good."""

    max_attempts: int
    base_seconds: float
    max_seconds: float
    disable_after: int

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0 < self.base_seconds <= self.max_seconds:
            raise ValueError("base_seconds must be > 0 and <= max_seconds")
        if self.disable_after < 1:
            raise ValueError("disable_after must be >= 1")


def delay(policy: RetryPolicy, attempts: int, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (equal jitter)."""
    full = exponential(policy.base_seconds, attempts, policy.max_seconds)
    return full / 2 + rng.uniform(0.0, full / 2)


def next_attempt_at(
    policy: RetryPolicy, attempts: int, now: datetime, rng: random.Random
) -> datetime | None:
    """When to try again after ``attempts`` failed attempts; ``None``: the delivery failed."""
    if attempts >= policy.max_attempts:
        return None
    return now + timedelta(seconds=delay(policy, attempts, rng))


def disables(policy: RetryPolicy, consecutive_failures: int) -> bool:
    """Whether an endpoint whose last ``consecutive_failures`` deliveries failed is disabled."""
    return consecutive_failures >= policy.disable_after


def is_success(status: int) -> bool:
    """A 2xx answer delivers; anything else (3xx included: redirects are not followed) fails."""
    return 200 <= status < 300
