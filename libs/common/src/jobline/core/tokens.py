"""Token buckets (pure): the per-process buckets and the arithmetic of leased blocks.

``rate`` tokens a second refill a bucket up to ``burst``; a request takes one (a batch of
jobs takes one per job). Time is a parameter (monotonic seconds for local buckets, database
time for the shared one), so every case is a plain unit test.

The shared per-tenant bucket lives in one PostgreSQL row; a gateway does not take from it per
request but leases a block of tokens and spends them locally, the approach of Oban Pro's
global limiter (producers track their share in the database and reconcile periodically) and
of Envoy's/Lyft's quota leasing. Tokens a gateway leased and did not spend within the lease's
lifetime are lost, never re-counted: the shared limit may under-admit by one block per
gateway, but never over-admits.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

K = TypeVar("K")

# Buckets of keys not seen for a while are dropped oldest-first beyond this many; a dropped
# bucket restarts full, which is what an idle key's bucket would be anyway.
MAX_BUCKETS: Final = 100_000


def refill(tokens: float, elapsed: float, rate: float, burst: float) -> float:
    """A bucket's tokens after ``elapsed`` seconds (never above ``burst``; clocks may step)."""
    return min(burst, tokens + max(elapsed, 0.0) * rate)


def wait_for(tokens: float, wanted: float, rate: float) -> float:
    """Seconds until a bucket holding ``tokens`` holds ``wanted`` (0 if it already does)."""
    return max(0.0, (wanted - tokens) / rate)


def block_size(rate: float, burst: float, lease_seconds: float, wanted: int) -> int:
    """How many tokens to lease: about ``lease_seconds`` of the rate, at least ``wanted``
    (the request at hand), at most the burst. Larger blocks mean fewer round trips; smaller
    ones mean less stranded in an idle gateway."""
    return int(max(wanted, min(burst, max(1.0, math.ceil(rate * lease_seconds)))))


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease from the shared bucket: ``granted`` tokens (0 or all that was asked: a
    request is admitted whole or not at all), ``tokens`` left in the bucket, and ``wait``
    seconds until the asked-for amount would be there."""

    granted: int
    tokens: float
    wait: float


def lease(tokens: float, asked: int, needed: int, rate: float) -> Grant:
    """Take ``asked`` tokens from a bucket holding ``tokens`` (already refilled), or as many as
    there are if at least ``needed`` (the request at hand); otherwise nothing."""
    whole = math.floor(tokens)
    if whole >= asked:
        return Grant(asked, tokens - asked, 0.0)
    if whole >= needed:
        return Grant(whole, tokens - whole, 0.0)
    return Grant(0, tokens, wait_for(tokens, needed, rate))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets(Generic[K]):
    """``rate`` tokens a second refill each key's bucket, up to ``burst``; a request takes one."""

    def __init__(self, rate: float, burst: int, max_buckets: int = MAX_BUCKETS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[K, _Bucket] = OrderedDict()

    def take(self, key: K, now: float) -> float | None:
        """Take a token at monotonic time ``now``: None if allowed, else seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = refill(bucket.tokens, now - bucket.updated, self.rate, self.burst)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return wait_for(bucket.tokens, 1.0, self.rate)


# A day: a longer wait (a rate configured near zero) is said as a day, never as infinity.
MAX_RETRY_AFTER_SECONDS: Final = 86400


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is admitted."""
    return str(max(1, math.ceil(min(seconds, MAX_RETRY_AFTER_SECONDS))))
