"""``/v1/workflows``: a graph of jobs submitted as one unit, and its state.

A node is a job (the fields of :class:`~jobline.api.jobs.JobSpec` but the delays and
``unique``) with a ``ref`` and the refs it ``depends_on``. Pydantic only, like every body.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from jobline.api.fields import Answer, JsonObject, Request
from jobline.api.jobs import ErrorOut, JobSpec, JobState

MAX_NODES: Final = 5000
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


class WorkflowNodeIn(JobSpec):
    """One node: a job with a `ref` (unique in the workflow) and the refs it depends on.
    It runs once every parent succeeded (or ended, under `on_failure: continue`)."""

    ref: Ref
    depends_on: Annotated[list[Ref], Field(max_length=MAX_NODES)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_delay(self) -> WorkflowNodeIn:
        if self.run_at is not None or self.delay_seconds is not None:
            raise PydanticCustomError(
                "workflow_delay", "a workflow node runs when its parents end: no run_at/delay"
            )
        if self.unique is not None:
            raise PydanticCustomError("workflow_unique", "a workflow node takes no unique key")
        return self


class WorkflowIn(Request):
    """A workflow: its nodes, validated as one graph (unknown refs and cycles are refused
    with a pointer to the entry), accepted in one transaction."""

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
