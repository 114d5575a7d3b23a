"""Queue depths and job counts: ``GET /v1/queues`` and ``GET /v1/stats``."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from jobline.api.fields import Answer
from jobline.api.jobs import JobState


class QueueStats(Answer):
    """One queue of the tenant."""

    name: str
    counts: dict[JobState, int] = Field(description="Jobs per state (every state present).")
    oldest_queued_at: datetime | None = Field(
        description="`scheduled_for` of the oldest job waiting in `queued`: the queue's lag."
    )


class QueueList(Answer):
    """Every queue the tenant has jobs in, by name."""

    queues: list[QueueStats]


class Stats(Answer):
    """The tenant's jobs now, and what finished within the window (``?window_seconds=``,
    default 3600)."""

    counts: dict[JobState, int] = Field(description="Jobs per state now.")
    window_seconds: int
    finished: dict[JobState, int] = Field(
        description="Jobs that reached succeeded, dead or cancelled within the window."
    )
