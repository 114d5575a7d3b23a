"""``/v1/workflows``: submit a graph of jobs, read it, cancel it, redrive a failed node.

Scopes as for jobs: submitting, cancelling and redriving need ``jobs:write``, reading
``jobs:read``. The coordination itself (a node released when its parents ended, exactly
once) runs in the transactions that end the nodes: see :mod:`jobline.pg.workflowstore`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request
from starlette.datastructures import State
from starlette.responses import Response

from jobline.api.workflows import REF_PATTERN, WorkflowIn, WorkflowOut, WorkflowPage
from jobline.api.workflows import WorkflowState as Status
from jobline.core import jsontext
from jobline.core.errors import IllegalTransition
from jobline.core.states import Cancel, Redrive, transition
from jobline.core.workflows import WorkflowState
from jobline.pg import audit, jobstore, workflowstore
from jobline.pg.db import Database
from jobline.web.problems import ProblemError, responses
from jobline_gateway import idempotency, workflow_submission
from jobline_gateway.cursors import Cursor, invalid_cursor
from jobline_gateway.deps import Db, KnownQuery, Reader, SettingsDep, Writer, actor
from jobline_gateway.metrics import IDEMPOTENT_REPLAYS
from jobline_gateway.workflow_render import render, summary

REF_PATH: Final = Path(pattern=REF_PATTERN, description="The node's ref in the workflow.")

router = APIRouter(prefix="/v1/workflows", tags=["workflows"], dependencies=[KnownQuery])

REPLAYED_HEADER: Final = "Idempotent-Replayed"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes the submission safe to retry: same key and body, same workflow.",
    ),
]


@router.post(
    "",
    operation_id="submitWorkflow",
    status_code=201,
    response_model=WorkflowOut,
    responses={200: {"model": WorkflowOut, "description": "Idempotent replay."}, **responses(422)},
)
async def submit_workflow(
    body: WorkflowIn, principal: Writer, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Submit a workflow: jobs with refs and dependencies, validated and accepted as one."""
    state: State = request.app.state
    fingerprint = (
        idempotency.request_hash("workflow", body.model_dump(mode="json"))
        if idempotency_key is not None
        else None
    )
    answer, replayed = await workflow_submission.submit(
        state,
        principal,
        body,
        now=datetime.now(UTC),
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )
    headers = {"Location": f"/v1/workflows/{answer['id']}"}
    if replayed:
        IDEMPOTENT_REPLAYS.inc()
        headers[REPLAYED_HEADER] = "true"
    return Response(
        jsontext.dumps(answer), 200 if replayed else 201, headers, media_type="application/json"
    )


LISTING: Final = "workflows"  # the cursors' listing name: a jobs cursor is refused here


@router.get("", operation_id="listWorkflows", response_model=WorkflowPage, responses=responses())
async def list_workflows(
    *,
    principal: Reader,
    db: Db,
    settings: SettingsDep,
    status: Annotated[Status | None, Query(description="Only workflows in this state.")] = None,
    limit: Annotated[
        int | None, Query(ge=1, description="Page size; capped by the server's maximum.")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
    ] = None,
) -> Any:
    """List the tenant's workflows, newest first, with their node counts by state."""
    return await page(
        db,
        principal.tenant_id,
        status=status,
        cursor=cursor,
        size=min(limit or settings.gateway_page_size_default, settings.gateway_page_size_max),
    )


async def page(
    db: Database, tenant_id: str, *, status: Status | None, cursor: str | None, size: int
) -> WorkflowPage:
    """One page of the listing (the API's and the console's)."""
    after = None
    if cursor is not None:
        try:
            found = Cursor.decode(cursor, LISTING)
        except ValueError:
            raise invalid_cursor() from None
        after = (found.created_at, found.id)
    async with db.connection() as conn:
        rows, more = await workflowstore.list_page(
            conn, tenant_id, state=status.value if status else None, after=after, limit=size
        )
    last = rows[-1] if more and rows else None
    return WorkflowPage(
        workflows=[summary(r) for r in rows],
        next_cursor=Cursor(last["created_at"], last["id"]).encode(LISTING) if last else None,
    )


@router.get(
    "/{workflow_id}",
    operation_id="getWorkflow",
    response_model=WorkflowOut,
    responses=responses(404),
)
async def get_workflow(workflow_id: UUID, principal: Reader, db: Db) -> Any:
    """A workflow: its state, and each node's state, timings and result."""
    return await _read(db, principal.tenant_id, workflow_id)


@router.post(
    "/{workflow_id}/cancel",
    operation_id="cancelWorkflow",
    response_model=WorkflowOut,
    responses=responses(404, 409),
)
async def cancel_workflow(
    workflow_id: UUID, principal: Writer, db: Db, request: Request, settings: SettingsDep
) -> Any:
    """Cancel every unfinished node (a running one is asked to stop) and the workflow."""
    now = datetime.now(UTC)
    # The workflow's row first, in its own transaction, then the nodes: the nodes' own
    # transitions lock their rows before the workflow's, and this keeps that order.
    async with db.transaction() as conn:
        row = await workflowstore.get(conn, principal.tenant_id, workflow_id)
        if row is None:
            raise _not_found(workflow_id)
        current = WorkflowState(row["state"])
        if current is WorkflowState.RUNNING:
            await workflowstore.set_state(
                conn, workflow_id, current, WorkflowState.CANCELLED, now, finished_at=None
            )
        elif current is not WorkflowState.CANCELLED:
            raise ProblemError(
                409,
                f"Workflow {workflow_id} already ended {current.value}.",
                kind="illegal-transition",
            )
    retention = timedelta(seconds=settings.job_retention_seconds)
    async with db.transaction() as conn:
        ids = await workflowstore.unfinished_nodes(conn, workflow_id)
        writes = []
        for job in (await jobstore.lock_many(conn, ids)).values():
            try:
                writes.append(jobstore.Write(job, Cancel(), transition(job, Cancel(), now)))
            except IllegalTransition:  # ended since the read
                continue
        await jobstore.save_many(conn, writes, now, retention=retention)
        await audit.record(conn, actor(request, principal), "workflow.cancel", str(workflow_id), {})
    return await _read(db, principal.tenant_id, workflow_id)


@router.post(
    "/{workflow_id}/nodes/{ref}/redrive",
    operation_id="redriveWorkflowNode",
    response_model=WorkflowOut,
    responses=responses(404, 409),
)
async def redrive_node(  # noqa: PLR0917 - FastAPI's parameters, each its own name
    workflow_id: UUID,
    ref: Annotated[str, REF_PATH],
    principal: Writer,
    db: Db,
    request: Request,
    settings: SettingsDep,
) -> Any:
    """Send a dead node back to its queue; the dependants its failure cancelled wait again."""
    now = datetime.now(UTC)
    try:
        async with db.transaction() as conn:
            row = await workflowstore.get(conn, principal.tenant_id, workflow_id)
            if row is None:
                raise _not_found(workflow_id)
            if row["state"] == WorkflowState.CANCELLED.value:
                raise ProblemError(
                    409, f"Workflow {workflow_id} was cancelled.", kind="illegal-transition"
                )
            job_id = await workflowstore.node_by_ref(conn, workflow_id, ref)
            if job_id is None:
                raise ProblemError(404, f"No node {ref!r} in workflow {workflow_id}.")
            await jobstore.apply(
                conn,
                job_id,
                Redrive(),
                now,
                tenant_id=principal.tenant_id,
                retention=timedelta(seconds=settings.job_retention_seconds),
            )
            await audit.record(
                conn, actor(request, principal), "workflow.redrive", str(workflow_id), {"ref": ref}
            )
    except IllegalTransition as exc:
        raise ProblemError(409, str(exc), kind="illegal-transition") from None
    return await _read(db, principal.tenant_id, workflow_id)


async def _read(db: Database, tenant_id: str, workflow_id: UUID) -> WorkflowOut:
    async with db.connection() as conn:
        row = await workflowstore.get(conn, tenant_id, workflow_id)
        if row is None:
            raise _not_found(workflow_id)
        nodes = await workflowstore.nodes(conn, workflow_id)
    return render(row, nodes)


def _not_found(workflow_id: UUID) -> ProblemError:
    # Another tenant's workflow answers exactly like one that never existed.
    return ProblemError(404, f"No workflow {workflow_id}.")
