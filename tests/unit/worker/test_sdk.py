"""The worker's pure parts: registry, offsets, outcome mapping, context."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.states import (
    AttemptOutcome,
    Cancelled,
    Claim,
    Fail,
    HandBack,
    Job,
    JobState,
    Succeed,
    transition,
)
from jobline.observe.logs import for_job
from jobline_worker import NonRetryable, Retry, Worker
from jobline_worker.context import JobContext
from jobline_worker.errors import AppNotFound, DuplicateHandler, PayloadInvalid, WorkerError
from jobline_worker.offsets import OffsetTracker, PartitionOffsets
from jobline_worker.outcomes import (
    Raised,
    Returned,
    Stopped,
    StopReason,
    TimedOut,
    apply_policy,
    to_event,
)
from jobline_worker.registry import load_app

# --- registry ------------------------------------------------------------------------

app = Worker()


@app.job("a", queue="emails", timeout=5)
async def handler_a(ctx, payload):
    return payload


@app.job("b")
def handler_b(ctx, payload):
    return 1


def test_registry_records_handlers_and_their_options():
    a, b = app.spec("a"), app.spec("b")
    assert a is not None
    assert b is not None
    assert (a.queue, a.timeout, a.is_async) == ("emails", 5, True)
    assert (b.queue, b.timeout, b.is_async) == ("default", None, False)
    assert app.spec("nope") is None
    assert app.queues() == ["emails", "default"]
    assert [s.type for s in app] == ["a", "b"]
    assert a.effective_timeout(300) == 5
    assert a.effective_timeout(1) == 1
    assert b.effective_timeout(300) == 300


def test_registry_rejects_bad_options_and_duplicates():
    worker = Worker()
    with pytest.raises(ValueError, match="queue"):
        worker.job("x", queue="Bad Queue")
    with pytest.raises(ValueError, match="timeout"):
        worker.job("x", timeout=0)
    with pytest.raises(ValueError, match="max_attempts"):
        worker.job("x", max_attempts=0)
    worker.job("x")(handler_b)
    with pytest.raises(DuplicateHandler):
        worker.job("x")(handler_a)


def test_load_app_finds_a_worker_or_says_why_not():
    assert load_app("tests.unit.worker.test_sdk:app") is app
    assert load_app("jobline_worker.examples:worker").spec("send-email") is not None
    for bad in ("no_colon", "tests.unit.worker.test_sdk:handler_a", "no.such.module:app"):
        with pytest.raises(AppNotFound):
            load_app(bad)


def test_errors_share_one_root_and_default_to_their_docstring():
    assert issubclass(NonRetryable, WorkerError)
    assert issubclass(Retry, WorkerError)
    assert issubclass(PayloadInvalid, NonRetryable)
    assert str(NonRetryable()) == NonRetryable.__doc__
    assert Retry(after=2.5).after == 2.5
    with pytest.raises(ValueError, match=">= 0"):
        Retry(after=-1)


# --- offsets -------------------------------------------------------------------------


def test_commit_position_waits_for_the_lowest_undecided_offset():
    p = PartitionOffsets()
    assert p.position() is None
    for offset in (10, 11, 12, 13):
        p.take(offset)
    assert p.position() == 10
    p.decide(12)
    p.decide(11)
    assert p.position() == 10  # 10 still undecided: committing past it could lose it
    p.decide(10)
    assert p.position() == 13
    p.decide(13)
    assert p.position() == 14
    assert p.in_flight == 0


def test_tracker_reports_only_moved_positions_and_forgets_revoked_partitions():
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.take("p0", 0)
    tracker.take("p1", 5)
    tracker.take("p1", 6)
    assert tracker.to_commit() == {"p0": 0, "p1": 5}
    tracker.committed({"p0": 0, "p1": 5})
    assert tracker.to_commit() == {}
    tracker.decide("p1", 6)
    assert tracker.to_commit() == {}
    tracker.decide("p1", 5)
    tracker.decide("p0", 0)
    assert tracker.to_commit() == {"p0": 1, "p1": 7}
    assert tracker.undecided() == 0
    tracker.take("p0", 1)
    tracker.forget(["p0"])
    assert tracker.position("p0") is None
    tracker.decide("p0", 1)  # a late decision for a revoked partition is ignored
    assert tracker.undecided() == 0


def test_taking_the_same_offset_twice_counts_once():
    p = PartitionOffsets()
    p.take(3)
    p.take(3)
    p.decide(3)
    assert p.position() == 4
    assert p.in_flight == 0


# --- outcomes ------------------------------------------------------------------------


def test_outcomes_map_to_state_machine_events():
    assert to_event(Returned({"ok": 1}), 100) == Succeed({"ok": 1})
    assert to_event(Stopped(StopReason.CANCEL_REQUESTED), 100) == Cancelled()
    assert to_event(Stopped(StopReason.SHUTDOWN), 100) == HandBack()
    assert to_event(Stopped(StopReason.LEASE_LOST), 100) is None
    timeout = to_event(TimedOut(2.0), 100)
    assert isinstance(timeout, Fail)
    assert timeout.outcome is AttemptOutcome.TIMEOUT
    assert timeout.retryable


def test_exceptions_steer_the_job():
    assert to_event(Raised(NonRetryable("bad input")), 100) == Fail(
        "NonRetryable", "bad input", retryable=False
    )
    retry = to_event(Raised(Retry(after=7)), 100)
    assert isinstance(retry, Fail)
    assert retry.retry_after == 7
    assert retry.retryable
    plain = to_event(Raised(KeyError("k")), 100)
    assert plain == Fail("KeyError", "'k'")


def test_results_must_be_json_and_within_the_size_limit():
    too_big = to_event(Returned("x" * 200), 100)
    assert isinstance(too_big, Fail)
    assert too_big.error_class == "ResultTooLarge"
    assert not too_big.retryable
    assert "limit is 100" in too_big.message
    not_json = to_event(Returned({1, 2}), 100)
    assert isinstance(not_json, Fail)
    assert not_json.error_class == "ResultNotSerializable"
    assert to_event(Returned(None), 100) == Succeed(None)


def _running(**changes) -> Job:
    now = datetime.now(UTC)
    job = Job(
        id=uuid4(), tenant_id="t", type="x", queue="default", state=JobState.QUEUED,
        payload={}, created_at=now, run_at=now, max_attempts=5, **changes,
    )  # fmt: skip
    return transition(job, Claim("w", 30), now).job


def test_handler_policy_caps_attempts_and_replaces_backoff():
    capped = Worker()
    capped.job("x", max_attempts=1)(handler_a)
    fail = Fail("E", "m")
    assert apply_policy(fail, _running(), capped.spec("x")) == Fail("E", "m", retryable=False)
    fixed = Worker()
    fixed.job("x", backoff=BackoffPolicy(BackoffKind.FIXED, 4, 4))(handler_a)
    replaced = apply_policy(fail, _running(), fixed.spec("x"))
    assert isinstance(replaced, Fail)
    assert replaced.retry_after == 4
    # Retry(after=) wins over the handler's backoff; non-failures pass through.
    asked = Fail("Retry", "m", retry_after=1)
    assert apply_policy(asked, _running(), fixed.spec("x")) == asked
    assert apply_policy(Succeed(1), _running(), fixed.spec("x")) == Succeed(1)
    assert apply_policy(fail, _running(), None) == fail


# --- context -------------------------------------------------------------------------


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    async def heartbeat(self) -> bool:
        self.calls.append(("heartbeat",))
        return True

    async def progress(self, fraction: float, message: str | None) -> None:
        self.calls.append(("progress", fraction, message))


def _context(backend: FakeBackend) -> JobContext:
    job_id = uuid4()
    return JobContext(
        job_id=job_id, type="x", queue="default", tenant="t", attempt=2, max_attempts=5,
        timeout_seconds=10, logger=for_job(logging.getLogger("t"), str(job_id)), backend=backend,
    )  # fmt: skip


async def test_context_reports_through_its_backend():
    backend = FakeBackend()
    ctx = _context(backend)
    assert ctx.idempotency_key == str(ctx.job_id)
    assert await ctx.heartbeat() is True
    await ctx.progress(0.25, "a quarter")
    assert backend.calls == [("heartbeat",), ("progress", 0.25, "a quarter")]
    with pytest.raises(ValueError, match="within"):
        await ctx.progress(1.5)


async def test_cancel_signal_reaches_async_waiters_and_threads():
    ctx = _context(FakeBackend())
    waiter = asyncio.create_task(ctx.cancelled.wait())
    seen = asyncio.to_thread(ctx.cancelled.is_set)
    assert await seen is False
    ctx.cancelled.set("cancel_requested")
    ctx.cancelled.set("shutdown")  # the first reason sticks
    await asyncio.wait_for(waiter, 1)
    assert await asyncio.to_thread(ctx.cancelled.is_set)
    assert ctx.cancelled.reason == "cancel_requested"
