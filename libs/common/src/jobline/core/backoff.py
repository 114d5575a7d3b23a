"""Retry backoff policies as pure functions of the attempt number.

``failures`` counts the failed attempts so far (1 after the first failure). Jitter draws
from a caller-supplied :class:`random.Random`, so a seed makes every delay reproducible;
:mod:`jobline.core.retries` seeds it with the job id and attempt, which keeps it pure.
The default policy is not written here: see :data:`jobline.core.jobdefaults.PLATFORM_DEFAULTS`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

# Past this many doublings the float overflows; any realistic cap is hit long before.
_MAX_EXPONENT = 64


class BackoffKind(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"
    EXPONENTIAL_JITTER = "exponential_jitter"


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long to wait before retry number ``failures``."""

    kind: BackoffKind
    base_seconds: float
    max_seconds: float
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.base_seconds < 0:
            raise ValueError("base_seconds must be >= 0")
        if self.max_seconds < self.base_seconds:
            raise ValueError("max_seconds must be >= base_seconds")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "base_seconds": self.base_seconds,
            "max_seconds": self.max_seconds,
            "multiplier": self.multiplier,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackoffPolicy:
        """A stored policy; every field was written by :meth:`to_dict`."""
        return cls(
            kind=BackoffKind(data["kind"]),
            base_seconds=float(data["base_seconds"]),
            max_seconds=float(data["max_seconds"]),
            multiplier=float(data.get("multiplier", 2.0)),
        )


def fixed(base_seconds: float, failures: int, cap: float) -> float:
    """The same delay every time, capped."""
    _check_failures(failures)
    return min(base_seconds, cap)


def exponential(base_seconds: float, failures: int, cap: float, multiplier: float = 2.0) -> float:
    """``base * multiplier**(failures-1)``, capped; never decreases as failures grow."""
    _check_failures(failures)
    exponent = min(failures - 1, _MAX_EXPONENT)
    return float(min(base_seconds * multiplier**exponent, cap))


def full_jitter(
    base_seconds: float, failures: int, cap: float, rng: random.Random, multiplier: float = 2.0
) -> float:
    """Uniform in ``[0, exponential(...)]`` (AWS "full jitter"): spreads retry storms."""
    return rng.uniform(0.0, exponential(base_seconds, failures, cap, multiplier))


def delay_seconds(policy: BackoffPolicy, failures: int, rng: random.Random) -> float:
    """The delay ``policy`` prescribes after ``failures`` failed attempts."""
    if policy.kind is BackoffKind.FIXED:
        return fixed(policy.base_seconds, failures, policy.max_seconds)
    if policy.kind is BackoffKind.EXPONENTIAL:
        return exponential(policy.base_seconds, failures, policy.max_seconds, policy.multiplier)
    return full_jitter(policy.base_seconds, failures, policy.max_seconds, rng, policy.multiplier)


def next_retry_at(
    policy: BackoffPolicy, failures: int, now: datetime, rng: random.Random
) -> datetime:
    """When the next attempt becomes due."""
    return now + timedelta(seconds=delay_seconds(policy, failures, rng))


def _check_failures(failures: int) -> None:
    if failures < 1:
        raise ValueError("failures must be >= 1")
