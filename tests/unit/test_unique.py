"""Unique jobs: the pure decision (policy x holder x clock), and the request's validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest
from pydantic import ValidationError

from jobline.api.jobs import BatchIn, JobSpec
from jobline.api.unique import UniqueIn, UniquePolicy
from jobline.client import NO_RETRIES, AsyncClient, Client, Conflict
from jobline.client.sync import job_fields, unique_fields
from jobline.core.job import UNFINISHED_STATES, JobState
from jobline.core.unique import (
    Create,
    Existing,
    Holder,
    Policy,
    Reject,
    Replace,
    Unique,
    decide,
    duplicates,
    lock_order,
    within_window,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WAITING = (JobState.SCHEDULED, JobState.QUEUED, JobState.RETRYING)


def holder(state: JobState = JobState.QUEUED, age: float = 1.0) -> Holder:
    return Holder(uuid4(), state, NOW - timedelta(seconds=age))


def debounce(window: float) -> Unique:
    return Unique("k", Policy.DEBOUNCE, timedelta(seconds=window))


# --- decide -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(Policy))
def test_a_free_key_creates_whatever_the_policy(policy: Policy) -> None:
    unique = Unique("k", policy, timedelta(seconds=5) if policy is Policy.DEBOUNCE else None)
    assert decide(unique, None, NOW) == Create()


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED])
def test_a_finished_job_holds_no_key(policy: Policy, state: JobState) -> None:
    unique = Unique("k", policy, timedelta(seconds=5) if policy is Policy.DEBOUNCE else None)
    assert decide(unique, holder(state, age=0), NOW) == Create()


@pytest.mark.parametrize("state", sorted(UNFINISHED_STATES))
def test_reject_names_any_unfinished_holder(state: JobState) -> None:
    h = holder(state)
    decision = decide(Unique("k", Policy.REJECT), h, NOW)
    assert isinstance(decision, Reject)
    assert decision.holder == h


@pytest.mark.parametrize("state", WAITING)
def test_replace_replaces_a_waiting_holder(state: JobState) -> None:
    h = holder(state)
    assert decide(Unique("k", Policy.REPLACE), h, NOW) == Replace(h)


def test_replace_never_touches_a_running_holder_it_rejects() -> None:
    h = holder(JobState.RUNNING)
    decision = decide(Unique("k", Policy.REPLACE), h, NOW)
    assert isinstance(decision, Reject)
    assert decision.holder == h
    assert "running" in decision.why


@pytest.mark.parametrize("state", sorted(UNFINISHED_STATES))
def test_debounce_inside_the_window_answers_with_the_holder(state: JobState) -> None:
    h = holder(state, age=9.999)
    assert decide(debounce(10), h, NOW) == Existing(h)


@pytest.mark.parametrize("age", [10.0, 10.001, 3600.0])
def test_debounce_at_or_past_the_window_rejects(age: float) -> None:
    h = holder(JobState.QUEUED, age=age)
    decision = decide(debounce(10), h, NOW)
    assert isinstance(decision, Reject)
    assert "window" in decision.why


def test_the_window_is_measured_on_the_clock_given() -> None:
    h = holder(JobState.QUEUED, age=0)
    assert within_window(h, timedelta(seconds=1), NOW + timedelta(milliseconds=999))
    assert not within_window(h, timedelta(seconds=1), NOW + timedelta(seconds=1))
    assert not within_window(h, None, NOW)


# --- keys of a batch ---------------------------------------------------------------------


def test_duplicates_pairs_each_repeat_with_the_first() -> None:
    assert duplicates(["a", None, "b", "a", None, "a", "b"]) == [(0, 3), (0, 5), (2, 6)]
    assert duplicates([None, None, "x"]) == []


def test_locks_are_taken_in_one_order() -> None:
    assert lock_order(["b", None, "a", "b"]) == ["a", "b"]


# --- the request -------------------------------------------------------------------------


def spec(**unique: object) -> JobSpec:
    return JobSpec.model_validate({"type": "t", "payload": {}, "unique": unique})


def error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[object, ...]]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


def test_unique_defaults_to_reject() -> None:
    parsed = spec(key="invoice-42")
    assert parsed.unique == UniqueIn(key="invoice-42", policy=UniquePolicy.REJECT)


def test_debounce_needs_a_window() -> None:
    with pytest.raises(ValidationError) as exc:
        spec(key="k", policy="debounce")
    assert error_locs(exc) == [("unique",)]
    assert "window_seconds" in str(exc.value)


@pytest.mark.parametrize("policy", ["reject", "replace"])
def test_a_window_only_goes_with_debounce(policy: str) -> None:
    with pytest.raises(ValidationError) as exc:
        spec(key="k", policy=policy, window_seconds=5)
    assert error_locs(exc) == [("unique",)]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"key": ""}, ("unique", "key")),
        ({"key": "a\u0000b"}, ("unique", "key")),
        ({"key": "x" * 256}, ("unique", "key")),
        ({"key": "k", "policy": "latest"}, ("unique", "policy")),
        ({"key": "k", "policy": "debounce", "window_seconds": 0}, ("unique", "window_seconds")),
        ({"key": "k", "policy": "debounce", "window_seconds": -1}, ("unique", "window_seconds")),
        ({"key": "k", "extra": 1}, ("unique", "extra")),
        ({"policy": "reject"}, ("unique", "key")),
    ],
)
def test_invalid_unique_fields_point_at_the_field(
    fields: dict[str, object], loc: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec.model_validate({"type": "t", "payload": {}, "unique": fields})
    assert loc in error_locs(exc)


def test_each_job_of_a_batch_is_validated() -> None:
    with pytest.raises(ValidationError) as exc:
        BatchIn.model_validate(
            {"jobs": [{"type": "t", "payload": {}}, {"type": "t", "payload": {}, "unique": {}}]}
        )
    assert ("jobs", 1, "unique", "key") in error_locs(exc)


def test_the_client_builds_the_unique_field() -> None:
    assert unique_fields(None) is None
    assert unique_fields("k") == {"key": "k", "policy": "reject"}
    assert unique_fields("k", UniquePolicy.DEBOUNCE, 2.5) == {
        "key": "k",
        "policy": "debounce",
        "window_seconds": 2.5,
    }
    body = job_fields("t", {}, unique=unique_fields("k", "replace"))
    assert JobSpec.model_validate(body).unique == UniqueIn(key="k", policy=UniquePolicy.REPLACE)
    assert "unique" not in job_fields("t", {})


@pytest.mark.parametrize("aio", [False, True])
async def test_both_clients_send_unique_and_read_the_holder_from_a_conflict(aio: bool) -> None:
    holder = str(uuid4())
    sent: list[bytes] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        body = {"type": "urn:jobline:problem:unique-key-held", "title": "Unique key held"}
        return httpx.Response(
            409,
            json={**body, "status": 409, "detail": "held", "job_id": holder},
            headers={"content-type": "application/problem+json"},
        )

    transport = httpx.MockTransport(gateway)
    if aio:
        async with AsyncClient("http://gw", "jl_x", transport=transport, retry=NO_RETRIES) as a:
            with pytest.raises(Conflict) as exc:
                await a.submit("t", {}, unique_key="k", unique_policy="replace")
    else:
        client = Client("http://gw", "jl_x", transport=transport, retry=NO_RETRIES)
        with client as c, pytest.raises(Conflict) as exc:
            c.submit("t", {}, unique_key="k", unique_policy="replace")
    assert str(exc.value.problem.job_id) == holder
    assert b'"unique":{"key":"k","policy":"replace"}' in sent[0].replace(b" ", b"")
