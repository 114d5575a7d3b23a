"""Events -> rollups, histograms, the per-series detector set and recommendation policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from jobline.core import cloudevent as events
from jobline.core.backoff import BackoffPolicy
from jobline_analyzer import histogram
from jobline_analyzer.advice import advise
from jobline_analyzer.recovery import Attempt, JobHistory
from jobline_analyzer.rollup import aggregate, bucket_of, parse
from jobline_analyzer.series import BucketInput, SeriesDetectors
from tests.unit.analyzer.lifecycle import run_job

T0 = datetime(2026, 1, 5, 10, 0, 7, tzinfo=UTC)


def test_histogram_quantiles_are_within_a_bucket() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(mean=0.0, sigma=0.8, size=5000)
    hist = histogram.empty()
    for v in values:
        histogram.add(hist, float(v))
    for q in (0.1, 0.5, 0.9):
        estimate = histogram.quantile(hist, q)
        assert estimate is not None
        assert estimate == pytest.approx(float(np.quantile(values, q)), rel=0.05)
    assert histogram.median(histogram.empty()) is None
    assert histogram.index(0.0) == 0
    assert histogram.index(1e9) == histogram.SIZE - 1
    assert histogram.index(0.001) == 1
    assert (
        histogram.lower_edge(histogram.index(2.0))
        <= 2.0
        < histogram.upper_edge(histogram.index(2.0))
    )


def test_histograms_merge_by_addition() -> None:
    a, b, both = histogram.empty(), histogram.empty(), histogram.empty()
    for i, v in enumerate([0.01, 0.5, 0.5, 3.0, 40.0, 7200.0]):
        histogram.add(a if i % 2 else b, v)
        histogram.add(both, v)
    assert histogram.merge(a, b) == both
    assert histogram.merge([], both) == both


def test_lifecycle_events_roll_up_per_minute() -> None:
    jobs = [
        run_job("acme", "email", T0, "s"),
        run_job("acme", "email", T0, "ffs"),
        run_job("acme", "email", T0, "fff", max_attempts=3),
        run_job("acme", "sms", T0, "s"),
    ]
    parsed = [parse(events.decode(raw)) for j in jobs for raw in j.events]
    batch = aggregate(parsed, 3600)
    email = batch.rollups[("acme", "email", datetime(2026, 1, 5, 10, tzinfo=UTC))]
    assert (email.submitted, email.started, email.succeeded) == (3, 7, 2)
    assert (email.retried, email.dead, email.cancelled) == (4, 1, 0)
    assert histogram.total(email.wait_hist) == 7  # one queue wait per start
    assert histogram.total(email.run_hist) == 7  # one run time per finished attempt
    assert email.run_sum == pytest.approx(7.0)
    assert sum(n for _, n in batch.errors.values()) == 5
    (cls,) = {c for c, _ in batch.errors.values()}
    assert cls == "TimeoutError: upstream <ip> timed out after <n> s"
    dead = batch.jobs[jobs[2].job_id]
    assert (dead.state, dead.sequence) == ("dead", jobs[2].job.sequence)
    mine = [a for a in batch.attempts if a.job_id == jobs[1].job_id]
    # Strong updates record outcomes; the weak ones (a retry becoming due) never overwrite.
    strong = [(a.attempt, a.outcome) for a in mine if a.outcome and not a.weak]
    assert strong == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert {a.outcome for a in mine if a.weak} == {"handed_back"}


def test_buckets_follow_event_time_not_arrival() -> None:
    assert bucket_of(T0, 60) == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    assert bucket_of(T0, 5) == datetime(2026, 1, 5, 10, 0, 5, tzinfo=UTC)


def test_series_state_round_trips_and_resumes() -> None:
    fresh = SeriesDetectors("acme", "email")
    minutes = [
        BucketInput(T0 + timedelta(minutes=m), submitted=20, succeeded=19, retried=1)
        for m in range(90)
    ]
    for b in minutes[:60]:
        assert fresh.feed(b) == []
    restored = SeriesDetectors.from_state(json.loads(json.dumps(fresh.to_state())))
    for b in minutes[60:]:
        assert fresh.feed(b) == restored.feed(b)
    assert restored.to_state() == fresh.to_state()


def test_compressed_clock_reports_wall_clock_windows() -> None:
    # Two-second buckets: the detectors see one bucket as one minute; a failure burst after
    # 60 quiet buckets is found within the failure detector's window and reported in wall time.
    det = SeriesDetectors("acme", "flaky", bucket_seconds=2)
    found = []
    start = datetime(2026, 1, 5, 10, tzinfo=UTC)
    for i in range(80):
        burst = i >= 60
        b = BucketInput(
            start + timedelta(seconds=2 * i),
            submitted=20,
            succeeded=8 if burst else 20,
            retried=12 if burst else 0,
        )
        found += det.feed(b)
    spikes = [f for f in found if f.kind == "failure_rate_spike"]
    assert len(spikes) == 1
    end = spikes[0].window_end
    assert start + timedelta(seconds=120) < end <= start + timedelta(seconds=132)
    assert det.active()["failure_rate_spike"] == 1


def _history(i: int, outcomes: str, cls: str) -> JobHistory:
    t = T0 + timedelta(minutes=i)
    attempts = tuple(
        Attempt(
            n + 1,
            "succeeded" if o == "s" else "failed",
            t + timedelta(seconds=3 * n),
            t + timedelta(seconds=3 * n + 1),
            None if o == "s" else cls,
        )
        for n, o in enumerate(outcomes)
    )
    final = "succeeded" if outcomes.endswith("s") else "dead"
    return JobHistory(f"j{i}", "flaky", final, attempts)  # type: ignore[arg-type]


def test_advice_policy_is_a_valid_backoff_and_names_exception_types() -> None:
    histories = [_history(i, "ffs", "TimeoutError: upstream timed out") for i in range(20)]
    # 0 of 40 recover: the 95% Wilson upper bound (8.8%) is under 10%, so non-retryable.
    histories += [_history(100 + i, "fff", "ValueError: bad input <n>") for i in range(40)]
    now = T0 + timedelta(hours=1)
    advice = advise("acme", "flaky", histories, now, current_max_attempts=3)
    policy = advice.policy
    assert policy["max_attempts"] == 3
    assert policy["non_retryable_errors"] == ["ValueError"]
    BackoffPolicy.from_dict(policy["backoff"])  # what the job path will parse
    assert advice.body["dlq"]["dead_jobs"] == 40
    assert advice.body["dlq"]["redrive_likely"] == 0
    again = advise("acme", "flaky", histories, now, current_max_attempts=3)
    assert again.id == advice.id  # same advice, same id
    other = advise("other", "flaky", histories, now, current_max_attempts=3)
    assert other.id != advice.id
