"""Every transition of the job state machine, legal and illegal, plus invariants."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobline.core import cloudevent as events
from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.envelope import WorkEnvelope
from jobline.core.errors import IllegalTransition, StaleEvent
from jobline.core.job import AttemptOutcome, Job, JobState
from jobline.core.retries import HandlerLimits
from jobline.core.states import (
    Cancel,
    Cancelled,
    Claim,
    Due,
    Event,
    Fail,
    HandBack,
    LeaseExpired,
    Redrive,
    Succeed,
    Undeliverable,
    submit,
    transition,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JOB_ID = UUID("00000000-0000-4000-8000-000000000001")


def draft(**changes) -> Job:
    job = Job(
        id=JOB_ID,
        tenant_id="acme",
        type="send-email",
        queue="emails",
        state=JobState.QUEUED,
        payload={"to": "a@example.com"},
        created_at=T0,
        run_at=T0,
        max_attempts=3,
        backoff=BackoffPolicy(BackoffKind.EXPONENTIAL, 1.0, 60.0),
    )
    return replace(job, **changes)


def in_state(state: JobState, **changes) -> Job:
    """A job that reached ``state`` through legal transitions."""
    job, _ = submit(draft(), T0)
    if state is JobState.SCHEDULED:
        job, _ = submit(draft(run_at=T0 + timedelta(minutes=5)), T0)
    elif state is JobState.RUNNING:
        job, _ = transition(job, Claim(1, "w1", 30), T0)
    elif state is JobState.RETRYING:
        job, _ = transition(job, Claim(1, "w1", 30), T0)
        job, _ = transition(job, Fail(1, "w1", "ValueError", "boom"), T0)
    elif state is JobState.SUCCEEDED:
        job, _ = transition(job, Claim(1, "w1", 30), T0)
        job, _ = transition(job, Succeed(1, "w1", {"ok": True}), T0)
    elif state is JobState.DEAD:
        job, _ = transition(job, Claim(1, "w1", 30), T0)
        job, _ = transition(job, Fail(1, "w1", "ValueError", "bad", retryable=False), T0)
    elif state is JobState.CANCELLED:
        job, _ = transition(job, Cancel(), T0)
    assert job.state is state
    return replace(job, **changes)


def topics(messages) -> list[str]:
    return [m.topic for m in messages]


def event_types(messages) -> list[str]:
    return [events.decode(m.value).get_type() for m in messages if m.topic == "events"]


# --- the legal table -------------------------------------------------------------------


def fitting(name: str, job: Job) -> Event:
    """Event ``name`` as the job's current attempt and lease would send it."""
    owner = job.lease_owner or "w1"
    make: dict[str, Any] = {
        "Due": lambda: Due(job.attempt + 1),
        "Claim": lambda: Claim(job.attempt + 1, "w2", 30),
        "Succeed": lambda: Succeed(job.attempt, owner),
        "Fail": lambda: Fail(job.attempt, owner, "E", "m"),
        "LeaseExpired": lambda: LeaseExpired(job.attempt),
        "Cancel": Cancel,
        "Cancelled": lambda: Cancelled(job.attempt, owner),
        "Redrive": Redrive,
        "HandBack": lambda: HandBack(job.attempt, owner),
        "Undeliverable": lambda: Undeliverable(job.attempt + 1, "too large"),
    }
    event: Event = make[name]()
    return event


NAMES = ["Due", "Claim", "Succeed", "Fail", "LeaseExpired", "Cancel", "Cancelled", "Redrive",
         "HandBack", "Undeliverable"]  # fmt: skip

LEGAL = {
    ("Due", JobState.SCHEDULED): JobState.QUEUED,
    ("Due", JobState.RETRYING): JobState.QUEUED,
    ("Claim", JobState.QUEUED): JobState.RUNNING,
    ("Succeed", JobState.RUNNING): JobState.SUCCEEDED,
    ("Fail", JobState.RUNNING): JobState.RETRYING,
    ("LeaseExpired", JobState.RUNNING): JobState.RETRYING,
    ("Cancel", JobState.QUEUED): JobState.CANCELLED,
    ("Cancel", JobState.SCHEDULED): JobState.CANCELLED,
    ("Cancel", JobState.RETRYING): JobState.CANCELLED,
    ("Cancel", JobState.RUNNING): JobState.RUNNING,  # requested; the worker finishes it
    ("Redrive", JobState.DEAD): JobState.QUEUED,
    ("HandBack", JobState.RUNNING): JobState.QUEUED,
    ("Undeliverable", JobState.QUEUED): JobState.DEAD,
    ("Undeliverable", JobState.SCHEDULED): JobState.DEAD,
    ("Undeliverable", JobState.RETRYING): JobState.DEAD,
}


@pytest.mark.parametrize("state", list(JobState))
@pytest.mark.parametrize("name", NAMES)
def test_every_state_event_pair_is_legal_or_raises(name, state):
    job = in_state(state)
    later = T0 + timedelta(minutes=1)  # past every lease taken at T0
    expected = LEGAL.get((name, state))
    if name == "Cancelled" and state is JobState.RUNNING:
        # Legal only after a cancel request.
        with pytest.raises(IllegalTransition):
            transition(job, fitting(name, job), later)
        job, _ = transition(job, Cancel(), T0)
        expected = JobState.CANCELLED
    event = fitting(name, job)
    if expected is None:
        with pytest.raises(IllegalTransition, match=type(event).__name__):
            transition(job, event, later)
        return
    new, _ = transition(job, event, later)
    assert new.state is expected


# --- the delivery guards: stale events --------------------------------------------------


def test_a_claim_for_any_but_the_next_attempt_is_stale():
    job = in_state(JobState.QUEUED)
    for attempt in (0, 2, 5):
        with pytest.raises(StaleEvent):
            transition(job, Claim(attempt, "w", 30), T0)
    assert transition(job, Claim(1, "w", 30), T0).job.attempt == 1


def test_a_duplicate_claim_of_a_handed_back_job_is_stale():
    # A hand-back re-queues the job at the same attempt; the old message names the attempt
    # that was handed back, the new one the next.
    running = in_state(JobState.RUNNING)
    queued, _ = transition(running, HandBack(1, "w1"), T0)
    with pytest.raises(StaleEvent):
        transition(queued, Claim(1, "w2", 30), T0)
    assert transition(queued, Claim(2, "w2", 30), T0).job.state is JobState.RUNNING


@pytest.mark.parametrize(
    "event",
    [
        Succeed(1, "someone-else"),
        Succeed(2, "w1"),
        Fail(1, "someone-else", "E", "m"),
        Cancelled(0, "w1"),
        HandBack(1, "w9"),
    ],
)
def test_an_outcome_of_another_attempt_or_lease_is_stale(event):
    job, _ = transition(in_state(JobState.RUNNING), Cancel(), T0)
    with pytest.raises(StaleEvent):
        transition(job, event, T0)


def test_an_outcome_after_the_lease_was_rescued_is_stale():
    running = in_state(JobState.RUNNING)  # attempt 1, lease w1 until T0 + 30 s
    rescued, _ = transition(running, LeaseExpired(1), T0 + timedelta(seconds=31))
    retried, _ = transition(rescued, Due(2), T0 + timedelta(seconds=40))
    again, _ = transition(retried, Claim(2, "w2", 30), T0 + timedelta(seconds=41))
    with pytest.raises(StaleEvent):  # w1 finishing attempt 1 late
        transition(again, Succeed(1, "w1"), T0 + timedelta(seconds=42))


def test_a_stale_due_message_does_not_move_the_job():
    retrying = in_state(JobState.RETRYING)  # attempt 1 failed; the next message starts 2
    with pytest.raises(StaleEvent):
        transition(retrying, Due(1), T0)
    assert transition(retrying, Due(2), T0).job.state is JobState.QUEUED


def test_an_undeliverable_work_message_makes_its_job_dead_with_the_reason():
    queued = in_state(JobState.QUEUED)
    with pytest.raises(StaleEvent):  # an older attempt's message
        transition(queued, Undeliverable(0, "too large"), T0)
    dead, messages = transition(queued, Undeliverable(1, "a message is 2000000 bytes"), T0)
    assert dead.state is JobState.DEAD
    assert dead.attempt == 0  # no attempt was started
    assert dead.last_error is not None
    assert (dead.last_error.error_class, dead.last_error.message) == (
        "Undeliverable",
        "a message is 2000000 bytes",
    )
    assert topics(messages) == ["events", "jobs.dlq"]


def test_a_dead_letter_keeps_the_last_errors_and_says_how_many_it_left_out():
    job = in_state(JobState.QUEUED, max_attempts=30)
    now = T0
    for attempt in range(1, 31):
        job, _ = transition(job, Claim(attempt, "w", 30), now)
        job, messages = transition(job, Fail(attempt, "w", "E", f"failure {attempt}"), now)
        if job.state is JobState.RETRYING:
            job, _ = transition(job, Due(attempt + 1), now)
    assert job.state is JobState.DEAD
    letter = json.loads(messages[-1].value)
    assert [e["message"] for e in letter["errors"]] == [f"failure {n}" for n in range(11, 31)]
    assert letter["errors_omitted"] == 10


def test_lease_expiry_needs_the_running_attempt_and_an_expired_lease():
    running = in_state(JobState.RUNNING)  # lease until T0 + 30 s
    with pytest.raises(StaleEvent):
        transition(running, LeaseExpired(1), T0 + timedelta(seconds=10))  # renewed meanwhile
    with pytest.raises(StaleEvent):
        transition(running, LeaseExpired(2), T0 + timedelta(seconds=31))
    assert transition(running, LeaseExpired(1), T0 + timedelta(seconds=31)).job.state is (
        JobState.RETRYING
    )


# --- submission ------------------------------------------------------------------------


def test_submit_due_now_is_queued_with_a_work_message_due_now():
    job, messages = submit(draft(), T0)
    assert job.state is JobState.QUEUED
    assert job.sequence == 1
    assert topics(messages) == ["events", "jobs.emails"]
    assert event_types(messages) == ["jobline.job.queued"]
    work = messages[1]
    assert work.available_at == T0
    assert work.due_attempt is None  # the job is queued already
    envelope = WorkEnvelope.decode(work.value)
    assert envelope.attempt == 1
    assert envelope.id == JOB_ID
    assert envelope.payload == {"to": "a@example.com"}
    assert envelope.sequence == job.sequence


def test_the_work_message_describes_the_job_a_claim_decides_on():
    job, messages = submit(draft(priority=3, metadata={"k": 1}), T0)
    described = Job.queued_from(WorkEnvelope.decode(messages[1].value))
    assert described == job


def test_submit_in_the_future_is_scheduled_and_its_message_waits():
    later = T0 + timedelta(seconds=90)
    job, messages = submit(draft(run_at=later), T0)
    assert job.state is JobState.SCHEDULED
    assert event_types(messages) == ["jobline.job.scheduled"]
    assert messages[1].available_at == later
    assert messages[1].due_attempt == 1


def test_submit_rejects_a_job_that_already_ran():
    with pytest.raises(IllegalTransition):
        submit(in_state(JobState.RUNNING), T0)


def test_due_emits_queued_without_a_second_work_message():
    job, messages = transition(in_state(JobState.SCHEDULED), Due(1), T0)
    assert job.state is JobState.QUEUED
    assert topics(messages) == ["events"]


# --- running ---------------------------------------------------------------------------


def test_claim_starts_the_next_attempt_with_a_lease():
    job, messages = transition(in_state(JobState.QUEUED), Claim(1, "w9", 45), T0)
    assert job.attempt == 1
    assert job.lease_owner == "w9"
    assert job.lease_expires_at == T0 + timedelta(seconds=45)
    assert job.started_at == T0
    assert event_types(messages) == ["jobline.job.started"]


def test_succeed_stores_the_result_and_drops_the_lease():
    job, messages = transition(in_state(JobState.RUNNING), Succeed(1, "w1", [1, 2]), T0)
    assert job.result == [1, 2]
    assert job.finished_at == T0
    assert job.lease_owner is None
    assert job.lease_expires_at is None
    assert event_types(messages) == ["jobline.job.succeeded"]


def test_failure_with_attempts_left_retries_after_the_backoff():
    job, messages = transition(in_state(JobState.RUNNING), Fail(1, "w1", "IOError", "down"), T0)
    assert job.state is JobState.RETRYING
    assert job.run_at == T0 + timedelta(seconds=1)  # exponential, base 1, first failure
    work = next(m for m in messages if m.topic == "jobs.emails")
    assert work.available_at == job.run_at
    assert work.due_attempt == 2
    assert WorkEnvelope.decode(work.value).attempt == 2
    assert job.last_error is not None
    assert job.last_error.error_class == "IOError"
    assert event_types(messages) == ["jobline.job.retrying"]
    data = events.data_of(events.decode(messages[0].value))
    assert data["error"] == {"class": "IOError", "message": "down", "outcome": "failed"}


def test_backoff_grows_across_attempts():
    job = in_state(JobState.QUEUED)
    due_gaps = []
    for attempt in range(2):
        if job.state is JobState.RETRYING:
            job, _ = transition(job, Due(job.attempt + 1), T0)
        job, _ = transition(job, Claim(job.attempt + 1, "w", 30), T0)
        job, _ = transition(job, Fail(job.attempt, "w", "E", f"fail {attempt}"), T0)
        due_gaps.append((job.run_at - T0).total_seconds())
    assert due_gaps == [1.0, 2.0]


def test_retry_after_overrides_the_policy():
    fail = Fail(1, "w1", "E", "m", retry_after=42)
    job, _ = transition(in_state(JobState.RUNNING), fail, T0)
    assert job.run_at == T0 + timedelta(seconds=42)


def test_the_handlers_limits_cap_the_budget_and_replace_the_backoff():
    running = in_state(JobState.RUNNING, max_attempts=10)
    capped = Fail(1, "w1", "E", "m", limits=HandlerLimits(max_attempts=1))
    assert transition(running, capped, T0).job.state is JobState.DEAD
    fixed = BackoffPolicy(BackoffKind.FIXED, 7.0, 7.0)
    own = Fail(1, "w1", "E", "m", limits=HandlerLimits(backoff=fixed))
    assert transition(running, own, T0).job.run_at == T0 + timedelta(seconds=7)


def test_non_retryable_goes_straight_to_the_dlq():
    fail = Fail(1, "w1", "E", "m", retryable=False)
    job, messages = transition(in_state(JobState.RUNNING), fail, T0)
    assert job.state is JobState.DEAD
    assert job.attempts_left == 2
    assert topics(messages) == ["events", "jobs.dlq"]


def test_exhausted_attempts_die_with_every_error_in_the_dead_letter():
    job = in_state(JobState.QUEUED)
    for n in range(3):
        if job.state is JobState.RETRYING:
            job, _ = transition(job, Due(job.attempt + 1), T0)
        job, _ = transition(job, Claim(job.attempt + 1, "w", 30), T0)
        job, messages = transition(job, Fail(job.attempt, "w", "E", f"error {n + 1}"), T0)
    assert job.state is JobState.DEAD
    assert event_types(messages) == ["jobline.job.dead"]
    dead_letter = json.loads(next(m for m in messages if m.topic == "jobs.dlq").value)
    assert [e["message"] for e in dead_letter["errors"]] == ["error 1", "error 2", "error 3"]
    assert dead_letter["envelope"]["id"] == str(JOB_ID)
    assert dead_letter["reason"]["message"] == "error 3"


def test_lease_expiry_counts_as_a_failed_attempt():
    job, _ = transition(in_state(JobState.RUNNING), LeaseExpired(1), T0 + timedelta(minutes=1))
    assert job.state is JobState.RETRYING
    assert job.last_error is not None
    assert job.last_error.outcome is AttemptOutcome.LEASE_EXPIRED
    assert job.last_error.message == "lease expired"


def test_lease_expiry_on_the_last_attempt_is_dead():
    job = in_state(JobState.RUNNING, max_attempts=1)
    job, messages = transition(job, LeaseExpired(1), T0 + timedelta(minutes=1))
    assert job.state is JobState.DEAD
    assert "jobs.dlq" in topics(messages)


# --- cancel, redrive, hand back ---------------------------------------------------------


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING])
def test_cancel_of_waiting_jobs_is_immediate(state):
    job, messages = transition(in_state(state), Cancel(), T0)
    assert job.state is JobState.CANCELLED
    assert job.cancel_requested_at == T0
    assert event_types(messages) == ["jobline.job.cancelled"]


def test_cancel_of_a_running_job_is_only_requested_and_is_idempotent():
    running = in_state(JobState.RUNNING)
    job, messages = transition(running, Cancel(), T0)
    assert job.state is JobState.RUNNING
    assert job.cancel_requested_at == T0
    assert messages == ()
    again, messages = transition(job, Cancel(), T0 + timedelta(seconds=5))
    assert again == job
    assert messages == ()
    done, messages = transition(job, Cancelled(1, "w1"), T0)
    assert done.state is JobState.CANCELLED
    assert event_types(messages) == ["jobline.job.cancelled"]


def test_a_failure_after_a_cancel_request_ends_cancelled_not_retrying():
    job, _ = transition(in_state(JobState.RUNNING), Cancel(), T0)
    job, messages = transition(job, Fail(1, "w1", "CancelledError", "stopped"), T0)
    assert job.state is JobState.CANCELLED
    assert "jobs.dlq" not in topics(messages)


def test_redrive_gives_a_fresh_budget_without_rewinding_the_attempt():
    dead = in_state(JobState.DEAD)
    job, messages = transition(dead, Redrive(), T0)
    assert job.state is JobState.QUEUED
    assert job.attempt == dead.attempt
    assert job.attempts_left == job.max_attempts
    work = next(m for m in messages if m.topic == "jobs.emails")
    assert WorkEnvelope.decode(work.value).attempt == dead.attempt + 1


def test_hand_back_requeues_without_charging_the_attempt():
    running = in_state(JobState.RUNNING)
    job, messages = transition(running, HandBack(1, "w1"), T0)
    assert job.state is JobState.QUEUED
    assert job.attempts_left == running.attempts_left + 1
    assert job.lease_owner is None
    assert WorkEnvelope.decode(messages[1].value).attempt == running.attempt + 1


# --- invariants over arbitrary event sequences ------------------------------------------

# An event is drawn as a kind plus how it is addressed: fitting the job's current attempt and
# lease, or off by an attempt, or from another worker. Stale ones must always be refused.
event_strategy = st.tuples(
    st.sampled_from(NAMES), st.sampled_from(["fit", "older", "newer", "stranger"])
)


def addressed(name: str, how: str, job: Job) -> Any:
    event: Any = fitting(name, job)
    if how == "fit" or not hasattr(event, "attempt"):
        return event
    if how == "stranger":
        return replace(event, worker_id="stranger") if hasattr(event, "worker_id") else event
    return replace(event, attempt=event.attempt + (-1 if how == "older" else 1))


@settings(max_examples=300)
@given(st.lists(event_strategy, max_size=40), st.integers(min_value=1, max_value=5))
def test_invariants_hold_for_any_sequence_of_events(sequence, max_attempts):
    job, _ = submit(draft(max_attempts=max_attempts), T0)
    now = T0
    for name, how in sequence:
        now += timedelta(seconds=31)  # every lease taken earlier has run out
        before = job
        event = addressed(name, how, job)
        try:
            job, messages = transition(job, event, now)
        except IllegalTransition:
            continue
        # Only an event addressed to the current attempt (and, for an outcome, its lease) is
        # ever applied; any worker may claim.
        if hasattr(event, "attempt"):
            assert event.attempt == fitting(name, before).attempt  # type: ignore[union-attr]
        if hasattr(event, "worker_id") and not isinstance(event, Claim):
            assert event.worker_id == before.lease_owner
        # The guard columns never move backwards.
        assert job.attempt >= before.attempt
        assert job.sequence >= before.sequence
        # Each emitted event advances the sequence by one; its id is unique per job.
        emitted = [m for m in messages if m.topic == "events"]
        assert job.sequence == before.sequence + len(emitted)
        # Never more attempts charged than the budget allows.
        assert 0 <= job.attempts_used <= job.max_attempts
        # Terminal states are left only by redrive.
        if before.state.terminal and job.state != before.state:
            assert isinstance(event, Redrive)
        # Only a running job holds a lease.
        assert (job.lease_owner is not None) == (job.state is JobState.RUNNING)
        # Exactly the dead transition writes a dead letter.
        dlq = [m for m in messages if m.topic == "jobs.dlq"]
        assert len(dlq) == (
            1 if job.state is JobState.DEAD and before.state is not job.state else 0
        )


def test_event_ids_are_job_and_sequence():
    _, messages = submit(draft(), T0)
    event = events.decode(messages[0].value)
    assert event.get_id() == f"{JOB_ID}:1"
    assert event.get_subject() == str(JOB_ID)
    data = events.data_of(event)
    assert data["tenant"] == "acme"
    assert data["sequence"] == 1


def test_started_event_reports_queue_wait():
    job, _ = submit(draft(), T0)
    job, messages = transition(job, Claim(1, "w", 10), T0 + timedelta(seconds=3))
    data = events.data_of(events.decode(messages[0].value))
    assert data["timings"]["queue_wait_seconds"] == 3.0
