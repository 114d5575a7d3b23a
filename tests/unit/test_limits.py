from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobline.core import limits
from jobline.core.errors import IllegalTransition, StaleEvent
from jobline.core.job import JobState
from jobline.core.limits import ALL_TENANTS, LimitKind
from jobline.core.states import Hold, Resume, submit, transition
from tests.support import make_job

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "count", "period"),
    [("10/s", 10, 1), ("100/min", 100, 60), ("5/10s", 5, 10), ("1000/h", 1000, 3600)],
)
def test_rates_parse(spec, count, period):
    limit = limits.rate(spec)
    assert (limit.kind, limit.max, limit.period_seconds) == (LimitKind.RATE, count, period)


@pytest.mark.parametrize("spec", ["", "10", "10/", "ten/s", "0/s", "10/fortnight", "-1/s"])
def test_bad_rates_are_refused(spec):
    with pytest.raises(ValueError, match=r"invalid rate|at least 1"):
        limits.rate(spec)


def test_a_limit_needs_a_positive_max():
    with pytest.raises(ValueError, match="at least 1"):
        limits.concurrency(0)


def test_gates_are_per_tenant_per_key_value_or_shared():
    per_tenant = limits.concurrency(5)
    per_customer = limits.concurrency(5, "customer_id")
    shared = limits.rate("10/s", ALL_TENANTS)
    payload = {"customer_id": 42}
    assert limits.gate(per_tenant, "t", "acme", payload).key == "concurrency:t:acme"
    assert limits.gate(per_customer, "t", "acme", payload).key == (
        "concurrency:t:acme:customer_id=42"
    )
    assert limits.gate(shared, "t", "acme", payload).key == "rate:t:*"
    assert limits.gate(shared, "t", "other", payload).key == "rate:t:*"
    assert limits.gate(per_customer, "t", "acme", payload).label == "concurrency:t"


def test_a_payload_without_the_key_is_not_gated_by_that_limit():
    found = limits.gates([limits.concurrency(5, "customer_id")], "t", "acme", {"x": 1})
    assert found == []


def test_gates_come_sorted_so_locks_are_taken_in_one_order():
    found = limits.gates([limits.rate("1/s"), limits.concurrency(2)], "t", "acme", {})
    assert [g.key for g in found] == sorted(g.key for g in found)
    assert len(found) == 2


def test_admission_and_capacity():
    five = limits.concurrency(5)
    assert limits.admits(five, 4)
    assert not limits.admits(five, 5)
    assert limits.concurrency_capacity(five, running=3, pending=1) == 1
    assert limits.concurrency_capacity(five, running=5, pending=2) == 0
    rate = limits.rate("10/s")
    assert limits.rate_capacity(rate, starts_in_window=7, pending=0) == 3
    assert limits.window_start(rate, T0) == T0 - timedelta(seconds=1)


@given(st.lists(st.floats(min_value=0, max_value=20), min_size=1, max_size=60))
def test_admitting_by_the_window_rule_never_puts_more_than_max_in_any_window(arrivals):
    """Claims arrive (in lock order) at nondecreasing times; each is admitted only if fewer
    than max recorded starts lie after its window start. No window then holds more."""
    rate = limits.rate("3/s")
    admitted: list[datetime] = []
    for offset in sorted(arrivals):
        now = T0 + timedelta(seconds=offset)
        since = limits.window_start(rate, now)
        if limits.admits(rate, sum(1 for s in admitted if s > since)):
            admitted.append(now)
    for start in admitted:
        in_window = [s for s in admitted if start <= s < start + timedelta(seconds=1)]
        assert len(in_window) <= 3


def test_hold_and_resume():
    job = submit(make_job("acme", created_at=T0, run_at=T0), T0).job
    held, messages = transition(job, Hold(1, "concurrency:echo:acme"), T0)
    assert held.state is JobState.SCHEDULED
    assert held.held
    assert held.waiting_on == "concurrency:echo:acme"
    assert held.attempt == 0  # the attempt did not start
    assert [m.topic for m in messages] == ["events"]  # no work message while held
    resumed, messages = transition(held, Resume(), T0)
    assert resumed.state is JobState.QUEUED
    assert sorted(m.topic for m in messages) == ["events", "jobs.default"]
    assert not resumed.held


def test_a_stale_hold_and_a_resume_of_a_job_not_held_are_refused():
    job = submit(make_job("acme", created_at=T0, run_at=T0), T0).job
    with pytest.raises(StaleEvent):
        transition(job, Hold(2, "g"), T0)
    with pytest.raises(IllegalTransition):
        transition(job, Resume(), T0)
    later = T0 + timedelta(hours=1)
    scheduled = submit(make_job("acme", created_at=T0, run_at=later), T0).job
    with pytest.raises(IllegalTransition):
        transition(scheduled, Resume(), T0)  # delayed, not held


# --- a tenant's own limits (PUT /v1/job-types/{type}/limits) ---------------------------


def test_a_tenant_override_replaces_the_handlers_limits() -> None:
    declared = (limits.concurrency(5, "customer_id"), limits.rate("10/s"))
    own = limits.Override(concurrency=2)
    assert limits.effective(declared, own) == (limits.concurrency(2),)
    assert limits.effective(declared, None) == declared


def test_an_empty_override_lifts_the_tenants_limits_but_not_a_shared_one() -> None:
    shared = limits.rate("100/min", limits.ALL_TENANTS)
    declared = (limits.concurrency(5), shared)
    assert limits.effective(declared, limits.Override()) == (shared,)
    assert limits.effective(declared, limits.Override(rate_limit="5/s")) == (
        shared,
        limits.rate("5/s"),
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"concurrency": 0}, "at least 1"),
        ({"rate_limit": "ten per second"}, "invalid rate"),
        ({"concurrency": 3, "concurrency_key": "*"}, "other tenants"),
        ({"rate_limit": "1/s", "rate_key": "*"}, "other tenants"),
        ({"concurrency_key": "customer_id"}, "needs concurrency"),
        ({"rate_key": "customer_id"}, "needs rate_limit"),
    ],
)
def test_a_bad_override_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        limits.Override(**fields)


def test_gate_prefixes_cover_every_gate_of_a_tenants_type() -> None:
    own = (limits.concurrency(5, "customer_id"), limits.rate("1/s"))
    keys = [g.key for g in limits.gates(own, "send", "acme", {"customer_id": 7})]
    prefixes = limits.gate_prefixes("send", "acme")
    assert all(any(k == p or k.startswith(p + ":") for p in prefixes) for k in keys)
    other = [g.key for g in limits.gates(own, "send", "beta", {"customer_id": 7})]
    assert not any(k == p or k.startswith(p + ":") for p in prefixes for k in other)
