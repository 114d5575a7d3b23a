"""The workflows part of :class:`~jobline.client.Client`: submit a graph, read it, cancel it,
redrive a failed node."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jobline.api.workflows import (
    WorkflowIn,
    WorkflowOut,
    WorkflowPage,
    WorkflowState,
    WorkflowSummaryOut,
)
from jobline.client import _workflow_calls as calls
from jobline.client import pagination
from jobline.client._calls import Id
from jobline.client._sync_base import SyncBase
from jobline.client._transport import new_idempotency_key


class SyncWorkflows(SyncBase):
    """Workflows (see :class:`~jobline.client.Client`)."""

    def submit_workflow(
        self,
        jobs: Iterable[Mapping[str, Any]] | WorkflowIn,
        *,
        on_failure: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> WorkflowOut:
        """Submit jobs with ``ref`` and ``depends_on`` as one workflow (one transaction)."""
        json = calls.workflow_body(jobs, on_failure, metadata)
        return self._run(calls.submit_workflow(json, idempotency_key or new_idempotency_key()))

    def get_workflow(self, workflow_id: Id) -> WorkflowOut:
        """A workflow and each node's state, timings and result."""
        return self._run(calls.get_workflow(workflow_id))

    def list_workflows(
        self,
        *,
        status: WorkflowState | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkflowPage:
        """One page of the tenant's workflows, newest first, with node counts by state."""
        return self._run(calls.list_workflows(status=status, limit=limit, cursor=cursor))

    def iter_workflows(
        self, *, status: WorkflowState | str | None = None, page_size: int | None = None
    ) -> Iterator[WorkflowSummaryOut]:
        """Every matching workflow, newest first, fetching pages as the iteration goes."""

        def fetch(cursor: str | None) -> WorkflowPage:
            return self.list_workflows(status=status, limit=page_size, cursor=cursor)

        return pagination.iterate(fetch, lambda page: page.workflows)

    def cancel_workflow(self, workflow_id: Id) -> WorkflowOut:
        """Cancel every unfinished node of the workflow."""
        return self._run(calls.cancel_workflow(workflow_id))

    def redrive_workflow_node(self, workflow_id: Id, ref: str) -> WorkflowOut:
        """Send a dead node back; the dependants its failure cancelled wait again."""
        return self._run(calls.redrive_workflow_node(workflow_id, ref))
