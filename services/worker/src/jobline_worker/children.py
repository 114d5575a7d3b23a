"""Child jobs a handler enqueued (``ctx.enqueue``): built and inserted with its success.

They are inserted by the transaction that records the parent's success (see
:mod:`jobline_worker.completion`), so a handler that fails, crashes or is stopped after
enqueueing enqueues nothing, and a success recorded twice cannot happen (the success is a
guarded transition). A child starts queued in the parent's queue unless it names one, with
the platform's defaults for what it leaves open; ``metadata.parent_job_id`` names its parent.
Children that wait for earlier siblings (``after``) make the parent's children a workflow
(:mod:`jobline.pg.workflowstore`): a callback after a fan-out, released exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID, uuid4

from jobline.core import states
from jobline.core.job import Job, JobState
from jobline.core.jobdefaults import PLATFORM_DEFAULTS
from jobline.core.states import Transition
from jobline.core.workflows import FailurePolicy
from jobline.pg import jobstore, workflowstore
from jobline.pg.db import Conn
from jobline_worker.context import ChildJob


def build(
    parent: Job, child: ChildJob, now: datetime, workflow_id: UUID | None = None
) -> Transition:
    """The submission of ``child`` (pure): waiting for its ``after`` siblings, if any."""
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
        workflow_id=workflow_id,
    )
    return states.submit_waiting(job, now) if child.after else states.submit(job, now)


async def insert(
    conn: Conn, parents: Sequence[tuple[Job, Sequence[ChildJob]]], now: datetime
) -> None:
    """Insert the children of parents whose success this transaction records.

    A parent's children of which one waits for others (``after``) form a workflow of their
    own (refs: the children's ids; policy cancel), inserted with them.
    """
    submitted: list[Transition] = []
    graphs: list[workflowstore.NewWorkflow] = []
    for parent, children in parents:
        workflow_id = uuid4() if any(c.after for c in children) else None
        submitted += [build(parent, c, now, workflow_id) for c in children]
        if workflow_id is not None:
            graphs.append(
                workflowstore.NewWorkflow(
                    id=workflow_id,
                    tenant_id=parent.tenant_id,
                    on_failure=FailurePolicy.CANCEL,
                    metadata={"parent_job_id": str(parent.id)},
                    refs={c.id: str(c.id) for c in children},
                    pendings={c.id: len(c.after) for c in children},
                    edges=[(p, c.id, str(p)) for c in children for p in c.after],
                )
            )
    if submitted:
        await jobstore.insert(conn, submitted)
    for graph in graphs:
        await workflowstore.insert(conn, graph, now)
