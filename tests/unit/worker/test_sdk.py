"""The worker's pure parts: registry, offsets, outcome mapping, context."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.job import AttemptOutcome, Job, JobState
from jobline.core.retries import NO_LIMITS, HandlerLimits
from jobline.core.states import Cancelled, Claim, Fail, HandBack, Succeed, transition
from jobline_worker import NonRetryable, Retry, Worker
from jobline_worker.context import JobContext
from jobline_worker.errors import AppNotFound, DuplicateHandler, PayloadInvalid, WorkerError
from jobline_worker.offsets import OffsetTracker, PartitionOffsets, log_went_back, may_commit
from jobline_worker.outcomes import (
    Raised,
    Returned,
    Stopped,
    StopReason,
    TimedOut,
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


def test_a_position_past_the_log_end_means_the_log_started_over():
    assert log_went_back(500, 12)  # the broker came back with a new, shorter log
    assert not log_went_back(12, 12)  # caught up
    assert not log_went_back(3, 12)
    assert not log_went_back(None, 12)  # nothing read yet
    assert not log_went_back(500, None)  # no fetch answered yet


def test_a_position_is_committed_only_where_a_fetch_showed_the_log_reaching_it():
    assert may_commit(10, highwater=12, fetched_at_ms=None, suspect_since_ms=None)
    assert not may_commit(10, highwater=None, fetched_at_ms=None, suspect_since_ms=None)
    assert not may_commit(13, highwater=12, fetched_at_ms=5, suspect_since_ms=None)
    # After a failed commit the broker may have restarted: only a later fetch vouches.
    assert not may_commit(10, highwater=12, fetched_at_ms=1_000, suspect_since_ms=1_000)
    assert not may_commit(10, highwater=12, fetched_at_ms=None, suspect_since_ms=1_000)
    assert may_commit(10, highwater=12, fetched_at_ms=1_001, suspect_since_ms=1_000)


# --- outcomes ------------------------------------------------------------------------


def _running(**changes) -> Job:
    now = datetime.now(UTC)
    job = Job(
        id=uuid4(), tenant_id="t", type="x", queue="default", state=JobState.QUEUED,
        payload={}, created_at=now, run_at=now, max_attempts=5, **changes,
    )  # fmt: skip
    return transition(job, Claim(1, "w", 30), now).job


def event(outcome, limit: int = 100, limits: HandlerLimits = NO_LIMITS):
    return to_event(outcome, _running(), "w", limits=limits, result_max_bytes=limit)


def test_outcomes_map_to_state_machine_events_of_the_running_attempt():
    assert event(Returned({"ok": 1})) == Succeed(1, "w", {"ok": 1})
    assert event(Stopped(StopReason.CANCEL_REQUESTED)) == Cancelled(1, "w")
    assert event(Stopped(StopReason.SHUTDOWN)) == HandBack(1, "w")
    assert event(Stopped(StopReason.LEASE_LOST)) is None
    timeout = event(TimedOut(2.0))
    assert isinstance(timeout, Fail)
    assert timeout.outcome is AttemptOutcome.TIMEOUT
    assert timeout.retryable


def test_exceptions_steer_the_job():
    assert event(Raised(NonRetryable("bad input"))) == Fail(
        1, "w", "NonRetryable", "bad input", retryable=False
    )
    retry = event(Raised(Retry(after=7)))
    assert isinstance(retry, Fail)
    assert retry.retry_after == 7
    assert retry.retryable
    assert event(Raised(KeyError("k"))) == Fail(1, "w", "KeyError", "'k'")


def test_results_must_be_json_and_within_the_size_limit():
    too_big = event(Returned("x" * 200))
    assert isinstance(too_big, Fail)
    assert too_big.error_class == "ResultTooLarge"
    assert not too_big.retryable
    assert "limit is 100" in too_big.message
    not_json = event(Returned({1, 2}))
    assert isinstance(not_json, Fail)
    assert not_json.error_class == "ResultNotSerializable"
    assert event(Returned(None)) == Succeed(1, "w", None)


def test_the_handlers_limits_travel_with_its_failures():
    capped = Worker()
    capped.job("x", max_attempts=1, backoff=BackoffPolicy(BackoffKind.FIXED, 4, 4))(handler_a)
    spec = capped.spec("x")
    assert spec is not None
    assert spec.limits == HandlerLimits(1, BackoffPolicy(BackoffKind.FIXED, 4, 4))
    fail = event(Raised(KeyError("k")), limits=spec.limits)
    assert isinstance(fail, Fail)
    assert fail.limits == spec.limits
    # The state machine applies them: the first attempt was the last the handler allows.
    assert transition(_running(), fail, datetime.now(UTC)).job.state is JobState.DEAD


# --- context -------------------------------------------------------------------------


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    async def heartbeat(self, job_id) -> bool:
        self.calls.append(("heartbeat", job_id))
        return True

    async def progress(self, job_id, fraction: float, message: str | None) -> None:
        self.calls.append(("progress", job_id, fraction, message))


def _context(backend: FakeBackend) -> JobContext:
    return JobContext(
        job_id=uuid4(), type="x", queue="default", tenant="t", attempt=2, max_attempts=5,
        timeout_seconds=10, backend=backend,
    )  # fmt: skip


async def test_context_reports_through_its_backend():
    backend = FakeBackend()
    ctx = _context(backend)
    assert ctx.idempotency_key == str(ctx.job_id)
    assert await ctx.heartbeat() is True
    await ctx.progress(0.25, "a quarter")
    assert backend.calls == [("heartbeat", ctx.job_id), ("progress", ctx.job_id, 0.25, "a quarter")]
    assert ctx.logger.extra["job_id"] == str(ctx.job_id)  # type: ignore[index]
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


def test_a_handlers_record_carries_its_models_schema_queue_and_tenants():
    from pydantic import BaseModel

    from jobline.core.payloads import PayloadSchema

    class Email(BaseModel):
        to: str

    app = Worker()

    @app.job("send-email", queue="emails", model=Email, tenants=["acme", "beta"])
    async def send(ctx, payload):
        return None

    @app.job("echo")
    async def echo(ctx, payload):
        return None

    emails = app.spec("send-email")
    assert emails is not None
    record = emails.record()
    assert (record.name, record.queue, record.allowed_tenants) == (
        "send-email",
        "emails",
        frozenset({"acme", "beta"}),
    )
    assert record.payload_schema is not None
    assert [v.pointer for v in PayloadSchema(record.payload_schema).violations({})] == ["/to"]
    plain = app.spec("echo")
    assert plain is not None
    assert plain.record().payload_schema is None
    assert plain.record().allowed_tenants is None
