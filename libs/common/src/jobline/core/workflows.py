"""Workflows as graphs: validation, order, and the fan-in decisions. Pure: no I/O, no clock.

A workflow is a list of nodes, each a job with a ``ref`` (unique in the workflow) and the refs
it ``depends_on``. A chain (each node depends on the one before) and a fan-out/fan-in (N nodes,
then one that depends on all of them) are special cases of the same graph.

:func:`validate` checks the graph as one unit and names the offending entry with a JSON
pointer into the request body (``/jobs/3/depends_on/0``), so the gateway can answer 422 with
the pointer; :func:`decide_child` is the policy applied when a parent of a waiting node ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from jobline.core import jsontext, topics
from jobline.core.errors import JoblineError
from jobline.core.job import JobState, iso
from jobline.core.messages import OutboxMessage

MAX_NODES: Final = 10_000
WORKFLOW_EVENT_PREFIX: Final = "jobline.workflow."
WORKFLOW_SOURCE: Final = "/jobline/workflows"


class FailurePolicy(StrEnum):
    """What a failed parent (dead after its retries, or cancelled) does to its dependants."""

    CANCEL = "cancel"  # cancel every dependant, with the reason (the default)
    CONTINUE = "continue"  # the dependants run anyway, the parent's failure in their context


class WorkflowState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self is not WorkflowState.RUNNING


@dataclass(frozen=True, slots=True)
class GraphError:
    """One problem with the graph and where it is in the request body."""

    pointer: str
    message: str


class InvalidGraph(JoblineError):
    """The workflow's graph is not a valid DAG."""

    def __init__(self, errors: Sequence[GraphError]) -> None:
        super().__init__("; ".join(f"{e.pointer}: {e.message}" for e in errors))
        self.errors = tuple(errors)


@dataclass(frozen=True, slots=True)
class Node:
    """A node's place in the graph (the job it runs is the caller's business)."""

    ref: str
    depends_on: tuple[str, ...] = ()


def validate(nodes: Sequence[Node], *, base: str = "/jobs") -> list[str]:
    """The refs in a topological order (parents before children), or raise InvalidGraph.

    Checked: at least one node, at most MAX_NODES; refs unique; every ``depends_on`` names a
    ref of the workflow, not the node itself, and not twice; no cycle. Every error found is
    reported (a cycle only once the refs are otherwise valid), each with its pointer.
    """
    errors: list[GraphError] = []
    if not nodes:
        errors.append(GraphError(base, "a workflow needs at least one job"))
    if len(nodes) > MAX_NODES:
        errors.append(GraphError(base, f"a workflow has at most {MAX_NODES} jobs"))
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.ref in index:
            errors.append(
                GraphError(f"{base}/{i}/ref", f"ref {node.ref!r} is also job {index[node.ref]}'s")
            )
        else:
            index[node.ref] = i
    for i, node in enumerate(nodes):
        seen: set[str] = set()
        for j, parent in enumerate(node.depends_on):
            pointer = f"{base}/{i}/depends_on/{j}"
            if parent not in index:
                errors.append(GraphError(pointer, f"unknown ref {parent!r}"))
            elif parent == node.ref:
                errors.append(GraphError(pointer, "a job cannot depend on itself"))
            elif parent in seen:
                errors.append(GraphError(pointer, f"{parent!r} is listed twice"))
            seen.add(parent)
    if errors:
        raise InvalidGraph(errors)
    order, left = _kahn(nodes)
    if left:
        cycle = _a_cycle(nodes, left)
        first = min(index[ref] for ref in cycle)
        raise InvalidGraph(
            [GraphError(f"{base}/{first}/depends_on", "cycle: " + " -> ".join(cycle))]
        )
    return order


def _kahn(nodes: Sequence[Node]) -> tuple[list[str], set[str]]:
    """Kahn's algorithm in the request's order; returns (order, refs left in cycles)."""
    waiting = {n.ref: len(set(n.depends_on)) for n in nodes}
    children: dict[str, list[str]] = {n.ref: [] for n in nodes}
    for n in nodes:
        for parent in set(n.depends_on):
            children[parent].append(n.ref)
    ready = [n.ref for n in nodes if waiting[n.ref] == 0]
    order: list[str] = []
    while ready:
        ref = ready.pop()
        order.append(ref)
        for child in children[ref]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return order, {ref for ref, count in waiting.items() if count > 0}


def _a_cycle(nodes: Sequence[Node], left: set[str]) -> list[str]:
    """One cycle among the refs Kahn could not order, as ``a -> b -> ... -> a``.

    Every ref left has a parent that is left too, so walking parents from any of them must
    come back to a ref already on the path.
    """
    parents = {n.ref: [p for p in n.depends_on if p in left] for n in nodes if n.ref in left}
    start = next(n.ref for n in nodes if n.ref in left)
    path = [start]
    on_path = {start: 0}
    while True:
        step = parents[path[-1]][0]
        if step in on_path:
            cycle = path[on_path[step] :]
            # Parents point backwards: reverse to read in the direction work flows.
            cycle.reverse()
            return [*cycle, cycle[0]]
        on_path[step] = len(path)
        path.append(step)


def parents_of(nodes: Sequence[Node]) -> Mapping[str, tuple[str, ...]]:
    return {n.ref: n.depends_on for n in nodes}


# --- what a parent's end does to a waiting child ----------------------------------------


class ChildAction(StrEnum):
    WAIT = "wait"  # other parents are still unfinished
    RELEASE = "release"  # every parent ended (as the policy allows): queue it now
    CANCEL = "cancel"  # a parent failed and the policy cancels dependants


def parent_failed(state: JobState) -> bool:
    """A parent that ended without success (dead after its retries, or cancelled)."""
    return state in (JobState.DEAD, JobState.CANCELLED)


def decide_child(pending_after: int, any_failed: bool, policy: FailurePolicy) -> ChildAction:
    """What happens to a waiting child once some of its parents ended.

    ``pending_after`` is how many parents it still waits for after this decrement;
    ``any_failed`` whether any parent that ended now failed.
    """
    if any_failed and policy is FailurePolicy.CANCEL:
        return ChildAction.CANCEL
    return ChildAction.RELEASE if pending_after == 0 else ChildAction.WAIT


def workflow_outcome(failed_nodes: int) -> WorkflowState:
    """The state of a workflow whose nodes have all ended (and that nobody cancelled)."""
    return WorkflowState.SUCCEEDED if failed_nodes == 0 else WorkflowState.FAILED


def cancel_reason(parent_ref: str, parent_state: JobState) -> str:
    """Why a dependant was cancelled by the CANCEL policy (kept in its metadata)."""
    return f"workflow: parent {parent_ref!r} ended {parent_state.value}"


def workflow_event(
    *,
    workflow_id: UUID,
    tenant: str,
    state: WorkflowState,
    sequence: int,
    now: datetime,
    nodes: int,
    failed: int,
    created_at: datetime,
    finished_at: datetime | None,
) -> OutboxMessage:
    """The CloudEvent ``jobline.workflow.<started|succeeded|failed|cancelled>`` for the events
    topic, keyed by the workflow id; its id ``<workflow id>:<sequence>`` deduplicates."""
    name = "started" if state is WorkflowState.RUNNING else state.value
    data: dict[str, Any] = {
        "workflow_id": str(workflow_id),
        "tenant": tenant,
        "state": state.value,
        "sequence": sequence,
        "nodes": nodes,
        "failed_nodes": failed,
        "timings": {"created_at": iso(created_at), "finished_at": iso(finished_at)},
    }
    value = jsontext.dumps(
        {
            "specversion": "1.0",
            "id": f"{workflow_id}:{sequence}",
            "type": WORKFLOW_EVENT_PREFIX + name,
            "source": WORKFLOW_SOURCE,
            "subject": str(workflow_id),
            "time": now,
            "datacontenttype": "application/json",
            "data": data,
        }
    )
    return OutboxMessage(topic=topics.EVENTS, key=str(workflow_id), value=value, available_at=now)
