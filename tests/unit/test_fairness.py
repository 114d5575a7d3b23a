"""Tenant fairness rules (jobline.core.fairness): the window, the estimate, the release."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobline.core.fairness import Count, Ledger, Pacing, combine, grants

A = ("default", "acme")
B = ("default", "beta")


def test_a_tenant_is_admitted_up_to_its_window_then_parked() -> None:
    ledger = Ledger(window=3)
    assert [ledger.admit(A) for _ in range(5)] == [True, True, True, False, False]
    assert ledger.parked == {A: 2}
    # Another tenant on the same queue has a window of its own.
    assert ledger.admit(B)


def test_a_count_replaces_the_estimate() -> None:
    ledger = Ledger(window=3)
    for _ in range(4):
        ledger.admit(A)
    ledger.recount_queue("default", {A: Count(waiting=1, parked=1)})
    assert ledger.waiting(A) == 1
    assert [ledger.admit(A) for _ in range(3)] == [True, True, False]


def test_released_messages_count_as_waiting() -> None:
    ledger = Ledger(window=10)
    ledger.recount_queue("default", {A: Count(waiting=4, parked=20)})
    ledger.released({A: 6})
    assert ledger.waiting(A) == 10
    assert ledger.parked == {A: 14}
    assert not ledger.admit(A)
    ledger.released({A: 15})
    assert A not in ledger.parked


def test_a_queue_is_worth_counting_only_when_it_can_change_something() -> None:
    ledger = Ledger(window=100)
    assert ledger.queues_near() == set()
    for _ in range(49):
        ledger.admit(A)
    assert ledger.queues_near() == set()
    ledger.admit(A)
    assert ledger.queues_near() == {"default"}  # half the window: a count may be needed soon
    ledger.recount_queue("default", {})
    assert ledger.queues_near() == set()
    ledger.recount_queue("other", {("other", "beta"): Count(waiting=0, parked=1)})
    assert ledger.queues_near() == {"other"}  # something parked waits for a release


def test_a_recount_of_one_queue_leaves_the_others() -> None:
    ledger = Ledger(window=10)
    other = ("other", "acme")
    for _ in range(3):
        ledger.admit(A)
        ledger.admit(other)
    ledger.admit_any("default")
    ledger.recount_queue("default", {B: Count(waiting=2, parked=0)})
    assert (ledger.waiting(A), ledger.waiting(B), ledger.waiting(other)) == (0, 2, 3)
    assert ledger.totals == {"default": 2, "other": 3}


def test_a_queue_that_frees_nothing_is_counted_less_and_less_often() -> None:
    pacing = Pacing(interval=0.1, cap=2.0)
    assert pacing.due("q", 0.0)
    now = 0.0
    for wait in (0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0):
        pacing.counted("q", False, now)
        assert not pacing.due("q", now + wait - 0.01)
        assert pacing.due("q", now + wait)
        now += wait
    pacing.counted("q", True, now)  # its workers came back: every round again
    assert pacing.due("q", now)


def test_grants_fill_each_tenants_room_with_its_parked_messages() -> None:
    counts = {
        A: Count(waiting=8, parked=100),
        B: Count(waiting=0, parked=3),
        ("other", "acme"): Count(waiting=10, parked=5),
        ("idle", "beta"): Count(waiting=2, parked=0),
    }
    assert grants(10, counts) == {A: 2, B: 3}


def test_parked_messages_of_cancelled_jobs_still_go_out() -> None:
    # 5 parked, 2 queued: 3 of the parked jobs were cancelled (waiting comes out negative).
    assert grants(10, {A: Count(waiting=-3, parked=5)}) == {A: 5}


def test_combine_subtracts_parked_from_queued() -> None:
    counts = combine([("default", "acme", 50), ("default", "beta", 2)], [("default", "acme", 45)])
    assert counts == {A: Count(5, 45), B: Count(2, 0)}


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Ledger(window=0)


@given(
    window=st.integers(1, 50),
    steps=st.lists(st.sampled_from(["a", "b", "start-a", "start-b", "count"]), max_size=200),
)
def test_the_estimate_never_lets_a_tenant_past_its_window(window: int, steps: list[str]) -> None:
    """Whatever the order of submissions, starts and counts, what a tenant has waiting in
    the broker (admitted less started) never exceeds the window, and a release after a count
    never pushes it past either."""
    ledger = Ledger(window)
    in_broker = {A: 0, B: 0}
    parked = {A: 0, B: 0}
    for step in steps:
        key = A if step.endswith("a") else B
        if step in ("a", "b"):
            # As the relay asks: the queue first, the tenant only near a window.
            if ledger.admit_any(key[0]) or ledger.admit(key):
                in_broker[key] += 1
            else:
                parked[key] += 1
        elif step.startswith("start"):
            in_broker[key] = max(in_broker[key] - 1, 0)
        else:
            counts = {k: Count(in_broker[k], parked[k]) for k in (A, B)}
            ledger.recount_queue("default", counts)
            granted = grants(window, counts)
            ledger.released(granted)
            for k, n in granted.items():
                parked[k] -= n
                in_broker[k] += n
        assert all(n <= window for n in in_broker.values())


def test_a_queue_far_from_a_window_admits_without_knowing_whose() -> None:
    ledger = Ledger(window=4)
    assert [ledger.admit_any("default") for _ in range(4)] == [True, True, True, False]
    # Three went unattributed: they count for every tenant of the queue until a count.
    assert ledger.waiting(A) == ledger.waiting(B) == 3
    assert ledger.admit(A)  # had the 3 been A's, A now has its 4
    assert ledger.admit(B)
    assert not ledger.admit(B)  # had the 3 been B's, B has its 4
    assert ledger.admit_any("other")
    ledger.recount_queue("default", {A: Count(1, 0), B: Count(1, 1)})
    assert ledger.waiting(A) == 1
    assert ledger.admit_any("default")  # 2 waiting in the queue now
