"""``/ui/workflows``: the workflows listing (keyset pages) and a workflow's page: its graph
drawn server-side as inline SVG (:mod:`graph`), live over SSE, with cancel and the redrive
of a dead node (the API's own functions, with the session's key)."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobline.api.workflows import REF_PATTERN, WorkflowOut, WorkflowState
from jobline.core.apikeys import Scope
from jobline.pg import workflowstore
from jobline.web.problems import ProblemError
from jobline_gateway import workflows
from jobline_gateway.console import graph, live, render
from jobline_gateway.console.access import ChangerDep, Viewer, ViewerDep, form
from jobline_gateway.workflow_render import render as render_workflow

router = APIRouter(prefix="/ui/workflows", include_in_schema=False)

PAGE_SIZE: Final = 50
REF: Final = re.compile(REF_PATTERN)
# Above this many nodes the page lists them without drawing the graph (a 2,000-node fan-out
# would be a column 140,000 pixels tall).
MAX_DRAWN: Final = 200
# How often a workflow's live page reads it (its row and its nodes), and how long one stream
# runs before the browser reconnects.
LIVE_TICK: Final = 1.0


@router.get("", response_class=HTMLResponse)
async def workflows_page(request: Request, viewer: ViewerDep) -> Response:
    """The tenant's workflows, newest first, filtered by state."""
    params = dict(request.query_params)
    errors: list[str] = []
    state = params.get("state") or None
    if state is not None and state not in {s.value for s in WorkflowState}:
        errors.append(f"unknown state {state!r}")
        state = None
    found = await workflows.page(
        request.app.state.db,
        viewer.tenant,
        status=WorkflowState(state) if state else None,
        cursor=params.get("cursor") or None,
        size=PAGE_SIZE,
    )
    kept = {"state": state} if state else {}
    return await render.page(
        request,
        viewer,
        "workflows.html",
        section="workflows",
        workflows=found.workflows,
        next_url="/ui/workflows?" + urlencode({**kept, "cursor": found.next_cursor})
        if found.next_cursor
        else None,
        first_url="/ui/workflows?" + urlencode(kept) if params.get("cursor") else None,
        params=params,
        errors=errors,
        states=[s.value for s in WorkflowState],
    )


async def _read(request: Request, tenant: str, workflow_id: UUID) -> WorkflowOut:
    async with request.app.state.db.connection() as conn:
        row = await workflowstore.get(conn, tenant, workflow_id)
        if row is None:  # another tenant's answers like one that never existed
            raise ProblemError(404, f"No workflow {workflow_id}.")
        nodes = await workflowstore.nodes(conn, workflow_id)
    return render_workflow(row, nodes)


def _live_html(workflow: WorkflowOut, viewer: Viewer) -> str:
    """The part of the page that changes: state, counters, the graph, the nodes, the buttons."""
    drawn = (
        graph.layout([(n.ref, n.depends_on) for n in workflow.nodes])
        if len(workflow.nodes) <= MAX_DRAWN
        else None
    )
    by_status: dict[str, int] = {}
    for node in workflow.nodes:
        by_status[node.status.value] = by_status.get(node.status.value, 0) + 1
    nodes = {n.ref: n for n in workflow.nodes}
    return render.ENV.get_template("_workflow_live.html").render(
        wf=workflow,
        nodes=nodes,
        # The table in the drawing's order (column by column), else as stored.
        ordered=[nodes[ref] for ref in drawn.boxes] if drawn else workflow.nodes,
        layout=drawn,
        max_drawn=MAX_DRAWN,
        by_status=by_status,
        viewer=viewer,
        csrf=viewer.csrf,
    )


@router.get("/{workflow_id:uuid}", response_class=HTMLResponse)
async def workflow_page(workflow_id: UUID, request: Request, viewer: ViewerDep) -> Response:
    """A workflow: its graph, each node's state, timings and result, and the buttons."""
    workflow = await _read(request, viewer.tenant, workflow_id)
    return await render.page(
        request,
        viewer,
        "workflow.html",
        section="workflows",
        wf=workflow,
        live=_live_html(workflow, viewer),
        notice=request.query_params.get("notice"),
        node=request.query_params.get("node", ""),
    )


def _ended(workflow: WorkflowOut) -> bool:
    # A cancelled workflow's running nodes may still be stopping: it ends with its last node.
    return workflow.status is not WorkflowState.RUNNING and workflow.nodes_unfinished == 0


@router.get("/{workflow_id:uuid}/live")
async def workflow_live(workflow_id: UUID, request: Request, viewer: ViewerDep) -> Response:
    """The live part of the workflow's page as SSE frames of HTML, sent when it changes; a
    last frame ``done`` once the workflow and all its nodes have ended."""
    await _read(request, viewer.tenant, workflow_id)  # 404 before the stream starts

    async def read() -> tuple[str, str | None] | None:
        try:
            workflow = await _read(request, viewer.tenant, workflow_id)
        except ProblemError:  # purged meanwhile
            return None
        done = workflow.status.value if _ended(workflow) else None
        return _live_html(workflow, viewer), done

    return live.stream(read, tick=LIVE_TICK)


async def _act(request: Request, viewer: Viewer, workflow_id: UUID, ref: str | None) -> Response:
    viewer.require(Scope.JOBS_WRITE)
    state = request.app.state
    db, settings, principal = state.db, state.settings, viewer.principal
    if ref is None:
        await workflows.cancel_workflow(workflow_id, principal, db, request, settings)
        query = urlencode({"notice": "cancelled"})
    else:
        await workflows.redrive_node(workflow_id, ref, principal, db, request, settings)
        query = urlencode({"notice": "redriven", "node": ref})
    return RedirectResponse(f"/ui/workflows/{workflow_id}?{query}", status_code=303)


@router.post("/{workflow_id:uuid}/cancel")
async def cancel(workflow_id: UUID, request: Request, viewer: ChangerDep) -> Response:
    """Cancel the workflow (the API's cancel, with the session's key)."""
    return await _act(request, viewer, workflow_id, None)


# The ref is a form field, not a path segment: a ref may be "." or "..", which a browser
# would resolve away in a URL.
@router.post("/{workflow_id:uuid}/redrive")
async def redrive(workflow_id: UUID, request: Request, viewer: ChangerDep) -> Response:
    """Redrive a dead node (the API's node redrive, with the session's key)."""
    ref = (await form(request)).get("ref", "")
    if not REF.match(ref):
        raise ProblemError(422, "The form names no node (ref).", kind="validation")
    return await _act(request, viewer, workflow_id, ref)
