"""The workflow routes as :class:`Call`\\ s (``/v1/workflows``), for both clients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from jobline.api.workflows import WorkflowIn, WorkflowOut, WorkflowPage, WorkflowState
from jobline.client._calls import Id, body
from jobline.client._transport import Call, model

WORKFLOWS: Final = "/v1/workflows"

_workflow = model(WorkflowOut)


def workflow_body(
    jobs: Iterable[Mapping[str, Any]] | WorkflowIn,
    on_failure: str | None,
    metadata: Mapping[str, Any] | None,
) -> Any:
    """The request body: a WorkflowIn as given, else the jobs (mappings with ``ref``,
    ``type``, ``payload`` and ``depends_on``) with the options that were given."""
    if isinstance(jobs, WorkflowIn):
        return body(jobs)
    out: dict[str, Any] = {"jobs": [dict(j) for j in jobs]}
    if on_failure is not None:
        out["on_failure"] = on_failure
    if metadata is not None:
        out["metadata"] = dict(metadata)
    return out


def submit_workflow(json: Any, key: str) -> Call[WorkflowOut]:
    return Call("POST", WORKFLOWS, _workflow, json=json, idempotency_key=key, planned=True)


def get_workflow(workflow_id: Id) -> Call[WorkflowOut]:
    return Call("GET", f"{WORKFLOWS}/{workflow_id}", _workflow, planned=True)


def list_workflows(
    *, status: WorkflowState | str | None, limit: int | None, cursor: str | None
) -> Call[WorkflowPage]:
    params = {"status": status, "limit": limit, "cursor": cursor}
    return Call("GET", WORKFLOWS, model(WorkflowPage), params=params)


def cancel_workflow(workflow_id: Id) -> Call[WorkflowOut]:
    # Cancelling twice answers the same: safe to repeat.
    return Call(
        "POST", f"{WORKFLOWS}/{workflow_id}/cancel", _workflow, idempotent=True, planned=True
    )


def redrive_workflow_node(workflow_id: Id, ref: str) -> Call[WorkflowOut]:
    return Call("POST", f"{WORKFLOWS}/{workflow_id}/nodes/{ref}/redrive", _workflow, planned=True)
