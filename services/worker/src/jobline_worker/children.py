"""Child jobs a handler enqueued (``ctx.enqueue``): built and inserted with its success.

They are inserted by the transaction that records the parent's success (see
:mod:`jobline_worker.completion`), so a handler that fails, crashes or is stopped after
enqueueing enqueues nothing, and a success recorded twice cannot happen (the success is a
guarded transition). A child starts queued in the parent's queue unless it names one, with
the platform's defaults for what it leaves open; ``metadata.parent_job_id`` names its parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jobline.core import states
from jobline.core.job import Job, JobState
from jobline.core.jobdefaults import PLATFORM_DEFAULTS
from jobline.core.states import Transition
from jobline.pg import jobstore
from jobline.pg.db import Conn
from jobline_worker.context import ChildJob


def build(parent: Job, child: ChildJob, now: datetime) -> Transition:
    """The submission of ``child`` (pure)."""
    job = Job(
        id=child.id,
        tenant_id=parent.tenant_id,
        type=child.type,
        queue=child.queue or parent.queue,
        state=JobState.QUEUED,
        payload=child.payload,
        created_at=now,
        run_at=now,
        max_attempts=child.max_attempts or PLATFORM_DEFAULTS.max_attempts,
        backoff=PLATFORM_DEFAULTS.backoff,
        timeout_seconds=child.timeout_seconds or PLATFORM_DEFAULTS.timeout_seconds,
        priority=child.priority,
        metadata={**child.metadata, "parent_job_id": str(parent.id)},
        traceparent=parent.traceparent,
    )
    return states.submit(job, now)


async def insert(
    conn: Conn, parents: Sequence[tuple[Job, Sequence[ChildJob]]], now: datetime
) -> None:
    """Insert the children of parents whose success this transaction records."""
    submitted = [build(parent, c, now) for parent, children in parents for c in children]
    if submitted:
        await jobstore.insert(conn, submitted)
