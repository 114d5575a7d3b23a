"""Workflows in PostgreSQL: insert a graph, and the fan-in that follows a node's transition.

:func:`follow` runs in the transaction that saved a batch of transitions (the job store calls
it from ``save_many`` and after the worker's direct success): for the workflow nodes among
them it resolves their edges (``resolve_edges``: each edge once), moves the workflow's
counters, and returns the transitions that decides for the dependants (``Release`` for a
child whose last parent ended, ``Cancel`` under the CANCEL policy, ``Revive`` when a failed
parent was redriven), decided by the pure state machine on the locked rows; the job store
saves those the same way, which may end more nodes, until nothing is left to follow.
Transitions of jobs in no workflow return at once: no statement is run for them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID

from jobline.core import workflows
from jobline.core.errors import IllegalTransition
from jobline.core.job import Job, JobState
from jobline.core.states import Cancel, Event, Release, Revive, Transition, transition
from jobline.core.workflows import ChildAction, FailurePolicy, WorkflowState
from jobline.pg import outbox
from jobline.pg.db import Conn
from jobline.pg.jobrows import job_from_row
from jobline.pg.queries import SQL as SHARED
from jobline.pg.queries import Queries

SQL: Final = Queries.load("jobline.pg", "workflows.sql")

Decided = tuple[Job, Event, Transition]


class Saved(Protocol):
    """A saved transition (the job store's ``Write``)."""

    @property
    def before(self) -> Job: ...

    @property
    def after(self) -> Job: ...


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    """A validated graph ready to insert: its nodes are already in the transaction."""

    id: UUID
    tenant_id: str
    on_failure: FailurePolicy
    metadata: dict[str, Any]
    refs: dict[UUID, str]  # node job id -> ref
    pendings: dict[UUID, int]  # node job id -> parents it waits for
    edges: list[tuple[UUID, UUID, str]]  # (parent id, child id, parent ref)


async def insert(conn: Conn, wf: NewWorkflow, now: datetime) -> None:
    """The workflow's row, its nodes' columns, its edges and its ``started`` event."""
    ids = list(wf.refs)
    await SQL.fetchrow(
        conn,
        "insert_workflow",
        id=wf.id,
        tenant_id=wf.tenant_id,
        on_failure=wf.on_failure.value,
        metadata=wf.metadata,
        nodes=len(ids),
        now=now,
        ids=ids,
        refs=[wf.refs[i] for i in ids],
        pendings=[wf.pendings[i] for i in ids],
        parent_ids=[e[0] for e in wf.edges],
        child_ids=[e[1] for e in wf.edges],
        parent_refs=[e[2] for e in wf.edges],
    )
    event = workflows.workflow_event(
        workflow_id=wf.id,
        tenant=wf.tenant_id,
        state=WorkflowState.RUNNING,
        sequence=1,
        now=now,
        nodes=len(ids),
        failed=0,
        created_at=now,
        finished_at=None,
    )
    await outbox.write(conn, [(event, wf.id)])


async def follow(conn: Conn, writes: Sequence[Saved], now: datetime) -> list[Decided]:
    """What the saved ``writes`` do to their workflows, in the caller's transaction."""
    nodes = [w for w in writes if w.after.workflow_id is not None]
    if not nodes:
        return []
    ended = [w.after for w in nodes if w.after.state.terminal and not w.before.state.terminal]
    reopened = [w for w in nodes if w.before.state.terminal and not w.after.state.terminal]
    if not ended and not reopened:
        return []
    decided: list[Decided] = []
    if ended:
        decided += await _resolve(conn, ended, now)
    for w in reopened:
        decided += await _revive(conn, w.after.id, now)
    await _count(conn, ended, [w.before for w in reopened], now)
    return decided


async def _resolve(conn: Conn, ended: list[Job], now: datetime) -> list[Decided]:
    rows = await SQL.fetch(
        conn, "resolve_edges", ids=[j.id for j in ended], states=[j.state.value for j in ended]
    )
    # child id -> (action, the failed parent's ref and state when the policy cancels it)
    actions: dict[UUID, tuple[ChildAction, tuple[str, JobState] | None]] = {}
    for r in rows:
        failed_refs = r["failed_refs"] or []
        action = workflows.decide_child(
            r["pending_parents"], bool(failed_refs), FailurePolicy(r["on_failure"])
        )
        if action is not ChildAction.WAIT:
            cause = (failed_refs[0], JobState(r["failed_states"][0])) if failed_refs else None
            actions[r["id"]] = (action, cause if action is ChildAction.CANCEL else None)
    if not actions:
        return []
    children = await _lock(conn, list(actions))
    decided: list[Decided] = []
    notes: dict[str, list[Any]] = {"ids": [], "reasons": [], "parents": []}
    for child_id, (action, cause) in actions.items():
        job = children[child_id]
        event: Event = Release() if action is ChildAction.RELEASE else Cancel()
        decided.append((job, event, transition(job, event, now)))
        if cause is not None:
            notes["ids"].append(child_id)
            notes["reasons"].append(workflows.cancel_reason(*cause))
            notes["parents"].append(cause[0])
    if notes["ids"]:
        await SQL.execute(conn, "note_parent_cancel", **notes)
    return decided


async def _revive(conn: Conn, node_id: UUID, now: datetime) -> list[Decided]:
    """A node back from dead (or revived itself): bring back what its failure cancelled."""
    ids = [r["id"] for r in await SQL.fetch(conn, "revivable_children", id=node_id)]
    if not ids:
        return []
    decided: list[Decided] = []
    for job in (await _lock(conn, ids)).values():
        try:
            decided.append((job, Revive(), transition(job, Revive(), now)))
        except IllegalTransition:  # pragma: no cover - the statement picked only these
            continue
    return decided


async def _lock(conn: Conn, ids: list[UUID]) -> dict[UUID, Job]:
    rows = await SHARED.fetch(conn, "lock_jobs", ids=ids, tenant_id=None)
    return {job.id: job for job in map(job_from_row, rows)}


async def _count(conn: Conn, ended: list[Job], reopened: list[Job], now: datetime) -> None:
    """Move the workflows' counters; end (or reopen) the workflows that this decides."""
    unfinished: dict[UUID, int] = defaultdict(int)
    failed: dict[UUID, int] = defaultdict(int)
    for job in ended:
        assert job.workflow_id is not None
        unfinished[job.workflow_id] -= 1
        failed[job.workflow_id] += workflows.parent_failed(job.state)
    for before in reopened:
        assert before.workflow_id is not None
        unfinished[before.workflow_id] += 1
        failed[before.workflow_id] -= workflows.parent_failed(before.state)
    ids = sorted(unfinished)  # one lock order for every writer of several workflows
    rows = await SQL.fetch(
        conn,
        "count_nodes",
        ids=ids,
        unfinished=[unfinished[i] for i in ids],
        failed=[failed[i] for i in ids],
    )
    for row in rows:
        state = WorkflowState(row["state"])
        if state is WorkflowState.CANCELLED:
            if row["unfinished"] == 0:
                await SQL.execute(conn, "finish_cancelled", id=row["id"], finished_at=now)
            continue
        if row["unfinished"] == 0:
            new, finished_at = workflows.workflow_outcome(row["failed"]), now
        else:
            new, finished_at = WorkflowState.RUNNING, None
        if new is not state:
            await set_state(conn, row["id"], state, new, now, finished_at=finished_at)


async def set_state(
    conn: Conn,
    workflow_id: UUID,
    expected: WorkflowState,
    new: WorkflowState,
    now: datetime,
    *,
    finished_at: datetime | None,
) -> bool:
    """The workflow's own transition, guarded on ``expected``, with its event."""
    row = await SQL.fetchrow(
        conn,
        "set_workflow_state",
        id=workflow_id,
        state=new.value,
        expected_state=expected.value,
        finished_at=finished_at,
    )
    if row is None:
        return False
    event = workflows.workflow_event(
        workflow_id=workflow_id,
        tenant=row["tenant_id"],
        state=new,
        sequence=row["sequence"],
        now=now,
        nodes=row["nodes"],
        failed=row["failed"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )
    await outbox.write(conn, [(event, workflow_id)])
    return True


# --- reads ------------------------------------------------------------------------------


async def get(conn: Conn, tenant_id: str, workflow_id: UUID) -> dict[str, Any] | None:
    row = await SQL.fetchrow(conn, "get_workflow", id=workflow_id, tenant_id=tenant_id)
    return dict(row) if row is not None else None


async def nodes(conn: Conn, workflow_id: UUID) -> list[tuple[Job, str, list[str], Any]]:
    """Each node: the job, its ref, its parents' refs, and its metadata's cancel reason."""
    rows = await SQL.fetch(conn, "workflow_nodes", id=workflow_id)
    return [
        (job_from_row(r), r["workflow_ref"], list(r["depends_on"]), r["metadata"]) for r in rows
    ]


# The first page's seek position: after every workflow (newest first).
_NEWEST: Final = (datetime(9999, 12, 31, tzinfo=UTC), UUID(int=(1 << 128) - 1))


async def list_page(
    conn: Conn,
    tenant_id: str,
    *,
    state: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of the tenant's workflows newest first (each with ``nodes_by_state``), after
    the keyset position ``after`` (created_at, id), and whether there is a next page."""
    before_created, before_id = after or _NEWEST
    rows = await SQL.fetch(
        conn,
        "list_workflows",
        tenant_id=tenant_id,
        state=state,
        before_created=before_created,
        before_id=before_id,
        limit=limit + 1,  # one extra row says whether there is a next page
    )
    return [dict(r) for r in rows[:limit]], len(rows) > limit


async def unfinished_nodes(conn: Conn, workflow_id: UUID) -> list[UUID]:
    return [r["id"] for r in await SQL.fetch(conn, "unfinished_nodes", id=workflow_id)]


async def node_by_ref(conn: Conn, workflow_id: UUID, ref: str) -> UUID | None:
    value = await SQL.fetchval(conn, "node_by_ref", id=workflow_id, ref=ref)
    return value if isinstance(value, UUID) else None


async def parent_results(conn: Conn, child_ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
    """For each claimed node: its parents by ref, each ``{state, result, error}``."""
    out: dict[UUID, dict[str, Any]] = {i: {} for i in child_ids}
    if not child_ids:
        return out
    for r in await SQL.fetch(conn, "parent_results", ids=list(child_ids)):
        out[r["child_id"]][r["parent_ref"]] = {
            "state": r["state"],
            "result": r["result"],
            "error": r["last_error"],
        }
    return out
