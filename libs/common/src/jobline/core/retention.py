"""Retention: which rows are due for purging, and how big the next purge batch is.

Pure: the clock and the measured batch time are parameters. The purge itself
(:mod:`jobline.pg.purge`) deletes in small batches, each its own short transaction, so no lock
is held long and autovacuum can reuse the freed space while the load goes on; these functions
decide the batch sizes and when a round has done enough.

Finished jobs carry their own due time (``purge_after``, stamped when they finish from
``job_retention_seconds``) and idempotency keys theirs (``expires_at``); the analyzer's
derived rows are due once they are older than a cutoff (:func:`cutoff`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from jobline.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Bounds of the adaptive batch size, and the longest one delete transaction should take.

    ``target_seconds`` is the knob that matters: a batch that overran it halves the next one
    (locks and the WAL burst stay short on a busy or slow server); a full batch well under it
    doubles the next one, up to ``maximum`` (a large backlog drains in fewer round trips).
    """

    initial: int = 500
    minimum: int = 10
    maximum: int = 5000
    target_seconds: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ConfigError(
                f"purge batch sizes need 1 <= minimum <= initial <= maximum, got "
                f"{self.minimum}, {self.initial}, {self.maximum}"
            )
        if self.target_seconds <= 0:
            raise ConfigError("the purge batch's target duration must be positive")


def next_batch_size(size: int, deleted: int, elapsed: float, limits: BatchLimits) -> int:
    """The size of the batch after one of ``size`` that deleted ``deleted`` rows in ``elapsed``."""
    if elapsed > limits.target_seconds:
        return max(limits.minimum, size // 2)
    if deleted >= size and elapsed * 2 < limits.target_seconds:
        return min(limits.maximum, size * 2)
    return min(max(size, limits.minimum), limits.maximum)


def round_done(deleted: int, size: int, spent: float, budget: float) -> bool:
    """Whether a purge round of one table stops after this batch.

    A short batch means nothing more is due now. Otherwise the round goes on until its time
    budget is spent, so one table's backlog never starves the other tables (or the relay's
    other chores) for long; the next round carries on where this one stopped.
    """
    return deleted < size or spent >= budget


def cutoff(now: datetime, keep: timedelta) -> datetime:
    """Rows stamped before this instant are due (they are older than ``keep``)."""
    if keep <= timedelta(0):
        raise ConfigError("a retention period must be positive")
    return now - keep
