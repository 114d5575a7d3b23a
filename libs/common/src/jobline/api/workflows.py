"""``/v1/workflows``: a graph of jobs submitted as one unit, and its state.

A node is a job (the fields of :class:`~jobline.api.jobs.JobSpec` but the delays and
``unique``) with a ``ref`` and the refs it ``depends_on``. Pydantic only, like every body.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints

from jobline.api.fields import (
    CURSOR_DESCRIPTION,
    Answer,
    JobType,
    JsonNumber,
    JsonObject,
    QueueName,
    Request,
)
from jobline.api.jobs import BackoffIn, ErrorOut, JobSpec, JobState

MAX_NODES: Final = 2000
REF_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,100}$"

Ref = Annotated[str, StringConstraints(pattern=REF_PATTERN)]


class FailurePolicy(StrEnum):
    """What a failed node (dead after its retries, or cancelled) does to its dependants."""

    CANCEL = "cancel"
    CONTINUE = "continue"


class WorkflowState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowNodeIn(Request):
    """One node: a job (the fields of a submitted job but `run_at`, `delay_seconds` and
    `unique`: a node runs when its parents end) with a `ref`, unique in the workflow, and the
    refs of the workflow's jobs it depends on (none twice, not its own, no cycle). It runs
    once every parent succeeded (or ended, under `on_failure: continue`)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ref": "sum", "type": "echo", "payload": {}}]}
    )

    ref: Ref
    depends_on: Annotated[list[Ref], Field(max_length=MAX_NODES)] = Field(default_factory=list)
    type: JobType
    payload: JsonObject = Field(description="The handler's input: any JSON object.")
    queue: QueueName = Field(
        default="default",
        description="A declared queue. Omitted: the job type's registered queue.",
    )
    priority: Annotated[int, Field(ge=0, le=9), JsonNumber] = 0  # as a job's: 0-9, its lane
    max_attempts: Annotated[int, Field(ge=1, le=1000), JsonNumber] | None = None
    backoff: BackoffIn | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86400), JsonNumber] | None = None
    metadata: JsonObject = Field(default_factory=dict)

    def job(self) -> JobSpec:
        """The node's job as a submitted job (only the fields it was given)."""
        given = self.model_fields_set - {"ref", "depends_on"}
        return JobSpec.model_validate(
            {name: getattr(self, name) for name in given} | {"type": self.type}
        )


class WorkflowIn(Request):
    """A workflow: its nodes, validated as one graph (a duplicate ref, a `depends_on` naming
    no ref of the workflow, its own ref or one twice, and cycles are refused with a pointer
    to the entry), accepted in one transaction."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "jobs": [
                        {"ref": "a", "type": "echo", "payload": {"n": 1}},
                        {"ref": "b", "type": "echo", "payload": {"n": 2}},
                        {"ref": "sum", "type": "echo", "payload": {}, "depends_on": ["a", "b"]},
                    ],
                    "on_failure": "cancel",
                }
            ]
        },
    )

    jobs: Annotated[list[WorkflowNodeIn], Field(min_length=1, max_length=MAX_NODES)]
    on_failure: FailurePolicy = Field(
        default=FailurePolicy.CANCEL,
        description="`cancel`: a failed node cancels its dependants (with the reason); "
        "`continue`: they run anyway, with the failure in their parents' results.",
    )
    metadata: JsonObject = Field(default_factory=dict)


class NodeTimings(Answer):
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class WorkflowNodeOut(Answer):
    """One node's job as it is now."""

    ref: str
    depends_on: list[str]
    job_id: UUID
    type: str
    status: JobState
    attempt: int
    timings: NodeTimings
    result: Any = None
    last_error: ErrorOut | None = None
    cancel_reason: str | None = None


class WorkflowTimings(Answer):
    created_at: datetime
    finished_at: datetime | None


class WorkflowLinks(Answer):
    self: str
    cancel: str


class WorkflowOut(Answer):
    """A workflow: its state, its nodes' states, timings and results."""

    id: UUID
    status: WorkflowState
    on_failure: FailurePolicy
    metadata: dict[str, Any]
    nodes_total: int
    nodes_unfinished: int
    nodes_failed: int = Field(description="Nodes that ended dead or cancelled.")
    timings: WorkflowTimings
    nodes: list[WorkflowNodeOut]
    links: WorkflowLinks


class WorkflowSummaryOut(Answer):
    """A workflow in a listing: its state, counters and timings (its nodes: GET its link)."""

    id: UUID
    status: WorkflowState
    on_failure: FailurePolicy
    metadata: dict[str, Any]
    nodes_total: int
    nodes_unfinished: int
    nodes_failed: int = Field(description="Nodes that ended dead or cancelled.")
    nodes_by_status: dict[str, int] = Field(
        description="How many nodes are in each job state (states with none are left out)."
    )
    timings: WorkflowTimings
    links: WorkflowLinks


class WorkflowPage(Answer):
    """One page of workflows, newest first."""

    workflows: list[WorkflowSummaryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page. "
        + CURSOR_DESCRIPTION
    )
