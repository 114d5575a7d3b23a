"""A workflow's answer (``WorkflowOut``) from its row and its nodes' jobs; a listing's
(``WorkflowSummaryOut``) from its row alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobline.api.jobs import ErrorOut
from jobline.api.workflows import (
    FailurePolicy,
    NodeTimings,
    WorkflowLinks,
    WorkflowNodeOut,
    WorkflowOut,
    WorkflowState,
    WorkflowSummaryOut,
    WorkflowTimings,
)
from jobline.core.job import Job

# A node as read: its job, its ref, its parents' refs, its metadata.
NodeRow = tuple[Job, str, list[str], Mapping[str, Any]]


def render(row: Mapping[str, Any], nodes: Sequence[NodeRow]) -> WorkflowOut:
    base = f"/v1/workflows/{row['id']}"
    return WorkflowOut(
        id=row["id"],
        status=WorkflowState(row["state"]),
        on_failure=FailurePolicy(row["on_failure"]),
        metadata=row["metadata"] or {},
        nodes_total=row["nodes"],
        nodes_unfinished=row["unfinished"],
        nodes_failed=row["failed"],
        timings=WorkflowTimings(created_at=row["created_at"], finished_at=row["finished_at"]),
        nodes=[_node(*n) for n in nodes],
        links=WorkflowLinks(self=base, cancel=f"{base}/cancel"),
    )


def summary(row: Mapping[str, Any]) -> WorkflowSummaryOut:
    """A row of ``list_workflows`` (a workflow and its ``nodes_by_state``)."""
    base = f"/v1/workflows/{row['id']}"
    return WorkflowSummaryOut(
        id=row["id"],
        status=WorkflowState(row["state"]),
        on_failure=FailurePolicy(row["on_failure"]),
        metadata=row["metadata"] or {},
        nodes_total=row["nodes"],
        nodes_unfinished=row["unfinished"],
        nodes_failed=row["failed"],
        nodes_by_status=dict(row["nodes_by_state"] or {}),
        timings=WorkflowTimings(created_at=row["created_at"], finished_at=row["finished_at"]),
        links=WorkflowLinks(self=base, cancel=f"{base}/cancel"),
    )


def _node(
    job: Job, ref: str, depends_on: list[str], metadata: Mapping[str, Any]
) -> WorkflowNodeOut:
    last = job.last_error
    reason = metadata.get("cancel_reason")
    return WorkflowNodeOut(
        ref=ref,
        depends_on=depends_on,
        job_id=job.id,
        type=job.type,
        status=job.state.value,
        attempt=job.attempt,
        timings=NodeTimings(
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at
        ),
        result=job.result,
        last_error=ErrorOut(
            attempt=last.attempt,
            error_class=last.error_class,
            message=last.message,
            outcome=str(last.outcome),
            started_at=last.started_at,
            finished_at=last.finished_at,
        )
        if last
        else None,
        cancel_reason=reason if isinstance(reason, str) else None,
    )
