"""Workflows' pure parts: graph validation (unit and property tests), the fan-in decisions,
the state machine's events for waiting nodes, and the workflow's lifecycle event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobline.core.envelope import WorkEnvelope
from jobline.core.errors import IllegalTransition
from jobline.core.job import Job, JobState
from jobline.core.states import (
    Cancel,
    Cancelled,
    Claim,
    Due,
    Release,
    Revive,
    submit,
    submit_waiting,
    transition,
)
from jobline.core.workflows import (
    ChildAction,
    FailurePolicy,
    InvalidGraph,
    Node,
    WorkflowState,
    decide_child,
    validate,
    workflow_event,
    workflow_outcome,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def new_job(**changes: object) -> Job:
    fields: dict[str, object] = {
        "id": uuid4(),
        "tenant_id": "t",
        "type": "echo",
        "queue": "default",
        "state": JobState.QUEUED,
        "payload": {},
        "created_at": NOW,
        "run_at": NOW,
        "workflow_id": uuid4(),
    }
    fields.update(changes)
    return Job(**fields)  # type: ignore[arg-type]


# --- validation -------------------------------------------------------------------------


def test_a_chain_and_a_fan_in_are_ordered_parents_first():
    chain = [Node("a"), Node("b", ("a",)), Node("c", ("b",))]
    assert validate(chain) == ["a", "b", "c"]
    fan = [*(Node(f"p{i}") for i in range(5)), Node("sum", tuple(f"p{i}" for i in range(5)))]
    assert validate(fan)[-1] == "sum"


def test_unknown_refs_self_references_duplicates_are_each_pointed_at():
    with pytest.raises(InvalidGraph) as caught:
        validate([Node("a", ("x", "a")), Node("a"), Node("b", ("a", "a"))])
    assert [(e.pointer, e.message) for e in caught.value.errors] == [
        ("/jobs/1/ref", "ref 'a' is also job 0's"),
        ("/jobs/0/depends_on/0", "unknown ref 'x'"),
        ("/jobs/0/depends_on/1", "a job cannot depend on itself"),
        ("/jobs/2/depends_on/1", "'a' is listed twice"),
    ]


def test_a_cycle_is_named_with_a_pointer_to_its_first_job():
    with pytest.raises(InvalidGraph) as caught:
        validate([Node("root"), Node("a", ("root", "c")), Node("b", ("a",)), Node("c", ("b",))])
    [error] = caught.value.errors
    assert error.pointer == "/jobs/1/depends_on"
    assert error.message.startswith("cycle: ")
    cycle = error.message.removeprefix("cycle: ").split(" -> ")
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_an_empty_workflow_is_refused():
    with pytest.raises(InvalidGraph, match="at least one job"):
        validate([])


@st.composite
def dags(draw: st.DrawFn) -> list[Node]:
    """Random DAGs: each node depends only on nodes before it, then shuffled."""
    size = draw(st.integers(1, 25))
    nodes = []
    for i in range(size):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=4)) if i else set()
        nodes.append(Node(f"n{i}", tuple(f"n{p}" for p in sorted(parents))))
    return draw(st.permutations(nodes))


@settings(max_examples=150, deadline=None)
@given(dags())
def test_every_dag_is_accepted_in_an_order_that_puts_parents_first(nodes):
    order = validate(nodes)
    assert sorted(order) == sorted(n.ref for n in nodes)
    position = {ref: i for i, ref in enumerate(order)}
    for node in nodes:
        assert all(position[p] < position[node.ref] for p in node.depends_on)


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_an_edge_back_from_a_descendant_is_always_a_cycle(nodes, data):
    edged = [n for n in nodes if n.depends_on]
    if not edged:
        return
    child = data.draw(st.sampled_from(edged))
    parent = child.depends_on[0]
    looped = [Node(n.ref, (*n.depends_on, child.ref)) if n.ref == parent else n for n in nodes]
    with pytest.raises(InvalidGraph) as caught:
        validate(looped)
    assert "cycle" in caught.value.errors[0].message


# --- decisions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pending", "failed", "policy", "action"),
    [
        (1, False, FailurePolicy.CANCEL, ChildAction.WAIT),
        (0, False, FailurePolicy.CANCEL, ChildAction.RELEASE),
        (1, True, FailurePolicy.CANCEL, ChildAction.CANCEL),
        (0, True, FailurePolicy.CANCEL, ChildAction.CANCEL),
        (1, True, FailurePolicy.CONTINUE, ChildAction.WAIT),
        (0, True, FailurePolicy.CONTINUE, ChildAction.RELEASE),
    ],
)
def test_what_a_parents_end_does_to_a_waiting_child(pending, failed, policy, action):
    assert decide_child(pending, failed, policy) is action


def test_a_workflow_ends_failed_when_any_node_failed():
    assert workflow_outcome(0) is WorkflowState.SUCCEEDED
    assert workflow_outcome(2) is WorkflowState.FAILED


# --- the state machine's part --------------------------------------------------------------


def test_a_waiting_node_has_no_work_message_until_released():
    waiting = submit_waiting(new_job(), NOW)
    assert waiting.job.state is JobState.SCHEDULED
    assert waiting.job.waiting_for_parents
    assert [m.topic for m in waiting.messages] == ["events"]
    with pytest.raises(IllegalTransition):
        transition(waiting.job, Due(1), NOW)
    released = transition(waiting.job, Release(), NOW)
    assert released.job.state is JobState.QUEUED
    work = released.messages[-1]
    assert work.topic == "jobs.default"
    assert work.due_attempt is None
    envelope = WorkEnvelope.decode(work.value)
    assert envelope.workflow == str(waiting.job.workflow_id)
    assert Job.queued_from(envelope).workflow_id == waiting.job.workflow_id  # type: ignore[union-attr]


def test_release_and_revive_refuse_what_they_do_not_fit():
    queued = submit(new_job(workflow_id=None), NOW).job
    with pytest.raises(IllegalTransition):
        submit_waiting(new_job(workflow_id=None), NOW)
    with pytest.raises(IllegalTransition):
        transition(queued, Release(), NOW)
    ran = transition(submit(new_job(), NOW).job, Claim(1, "w", 30), NOW).job
    requested = transition(ran, Cancel(), NOW).job
    cancelled_after_running = transition(requested, Cancelled(1, "w"), NOW).job
    assert cancelled_after_running.state is JobState.CANCELLED
    with pytest.raises(IllegalTransition, match="never ran"):
        transition(cancelled_after_running, Revive(), NOW)


def test_a_cancelled_waiting_node_is_revived_to_wait_again():
    waiting = submit_waiting(new_job(), NOW).job
    cancelled = transition(waiting, Cancel(), NOW).job
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at == NOW
    revived = transition(cancelled, Revive(), NOW).job
    assert revived.state is JobState.SCHEDULED
    assert revived.finished_at is None
    assert revived.waiting_for_parents


def test_a_job_outside_workflows_keeps_its_envelope_unchanged():
    job = submit(new_job(workflow_id=None), NOW)
    assert "workflow" not in json.loads(job.messages[-1].value)


def test_the_workflow_event_is_a_cloudevent_keyed_by_the_workflow():
    workflow_id = uuid4()
    message = workflow_event(
        workflow_id=workflow_id,
        tenant="t",
        state=WorkflowState.SUCCEEDED,
        sequence=2,
        now=NOW,
        nodes=3,
        failed=0,
        created_at=NOW,
        finished_at=NOW,
    )
    event = json.loads(message.value)
    assert message.key == str(workflow_id)
    assert message.topic == "events"
    assert event["type"] == "jobline.workflow.succeeded"
    assert event["id"] == f"{workflow_id}:2"
    assert event["data"]["nodes"] == 3


def test_the_analyzer_skips_workflow_events_without_counting_them_invalid():
    from jobline_analyzer.ingest import decode_records

    message = workflow_event(
        workflow_id=uuid4(),
        tenant="t",
        state=WorkflowState.RUNNING,
        sequence=1,
        now=NOW,
        nodes=1,
        failed=0,
        created_at=NOW,
        finished_at=None,
    )
    assert decode_records([message.value]) == ([], 0)


def test_a_child_waits_only_for_children_enqueued_before_it():
    from jobline_worker.context import JobContext

    ctx = JobContext(uuid4(), "t", "q", "tenant", 1, 3, 30.0, backend=None)  # type: ignore[arg-type]
    first = ctx.enqueue("a", {})
    second = ctx.enqueue("b", {}, after=[first, first])
    assert ctx.children[1].after == (first,)
    with pytest.raises(ValueError, match="after names no child enqueued before"):
        ctx.enqueue("c", {}, after=[uuid4()])
    assert [c.id for c in ctx.children] == [first, second]
