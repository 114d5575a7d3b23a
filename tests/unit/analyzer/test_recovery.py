"""Retry maths on hand-computable histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobline_analyzer.intervals import wilson_interval
from jobline_analyzer.recovery import (
    Attempt,
    JobHistory,
    attempt_success,
    recommend,
    redrive_likely,
    time_to_recovery,
)

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


def job(
    job_id: str, outcomes: str, gap_s: float = 10.0, cls: str = "TimeoutError", state: str = ""
) -> JobHistory:
    """outcomes like 'ffs': fail, fail, succeed; attempts `gap_s` apart ending before NOW."""
    start = NOW - timedelta(seconds=gap_s * (len(outcomes) + 1))
    attempts = []
    for i, o in enumerate(outcomes):
        t = start + timedelta(seconds=gap_s * i)
        attempts.append(
            Attempt(
                number=i + 1,
                outcome="succeeded" if o == "s" else "failed",
                started_at=t,
                finished_at=t + timedelta(seconds=1),
                error_class=None if o == "s" else cls,
            )
        )
    final = state or ("succeeded" if outcomes.endswith("s") else "dead")
    return JobHistory(job_id, "flaky", final, tuple(attempts))  # type: ignore[arg-type]


# 10 jobs: 5 succeed at once; of 5 failures 3 succeed on attempt 2; of 2, 1 on attempt 3.
HISTORIES = [job(f"ok{i}", "s") for i in range(5)] + [
    job("a", "fs"),
    job("b", "fs"),
    job("c", "fs"),
    job("d", "ffs"),
    job("e", "fff"),
]


def test_wilson_known_values() -> None:
    low, high = wilson_interval(0, 10, 0.95)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-3)
    low, high = wilson_interval(5, 10, 0.95)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-3)


def test_attempt_success_conditional_probabilities() -> None:
    stats = {s.attempt: s for s in attempt_success(HISTORIES)}
    assert (stats[1].trials, stats[1].successes, stats[1].p) == (10, 5, 0.5)
    assert (stats[2].trials, stats[2].successes, stats[2].p) == (5, 3, 0.6)
    assert (stats[3].trials, stats[3].successes, stats[3].p) == (2, 1, 0.5)
    assert stats[2].low < 0.6 < stats[2].high


def test_time_to_recovery_censors_dead_and_retrying_jobs() -> None:
    # From first failure to success: a, b, c take 10 s, d takes 20 s, e is dead (censored).
    ttr = time_to_recovery(HISTORIES, NOW)
    assert (ttr.jobs, ttr.recovered) == (5, 4)
    assert ttr.median_seconds == 10.0
    # KM: S(10) = 2/5, S(20) = 2/5 * 1/2 = 0.2 (d recovers, e censored at 20 s): never <= 0.1.
    assert ttr.p90_seconds is None
    still = job("f", "ff", state="retrying")
    assert time_to_recovery([still], NOW).median_seconds is None


def test_recommend_max_attempts_backoff_and_non_retryable() -> None:
    # Retries: p2 = 0.6 (5 trials), p3 = 0.5 (2 trials < min_trials -> pooled 4/7).
    # Gains: k=2: 0.6; k=3: 0.4 * 4/7 = 0.229; k=4: 0.171 * 4/7 = 0.098;
    # k=5: 0.042; k=6: 0.018 < 2% -> 5.
    # 0 of 40 recover: Wilson 95% upper bound 3.84 / 43.84 = 8.8% < 10% -> non-retryable.
    never = [job(f"n{i}", "fff", cls="ValidationError") for i in range(40)]
    rec = recommend("flaky", HISTORIES + never, NOW)
    assert rec.non_retryable == ("ValidationError",)
    remaining, k = 0.4, 2
    while remaining * 4 / 7 >= 0.02:
        remaining, k = remaining * 3 / 7, k + 1
    assert rec.max_attempts == k == 5
    # p90 not reached, so the median (10 s) is the target: <= 10 s -> constant, 10 / 4 = 2.5 s.
    assert rec.backoff == "constant"
    assert (rec.base_seconds, rec.cap_seconds) == (2.5, 2.5)
    assert "ValidationError" in rec.explanation


def test_recommend_without_failures_keeps_policy() -> None:
    rec = recommend("flaky", [job("x", "s")], NOW, current_max_attempts=5)
    assert rec.max_attempts == 5
    assert rec.non_retryable == ()


def test_redrive_likely_when_class_recovers_recently() -> None:
    dead = job("dead1", "fff")
    recovering = [job(f"r{i}", "fs") for i in range(8)]
    verdict = redrive_likely(dead, recovering, NOW)
    assert verdict.likely
    assert (verdict.trials, verdict.p_attempt) == (8, 1.0)
    failing = [job(f"x{i}", "ff", state="retrying") for i in range(8)]
    assert not redrive_likely(dead, failing, NOW).likely
    assert not redrive_likely(dead, [], NOW).likely  # no evidence: hold


def test_recommend_exponential_when_recovery_is_slow() -> None:
    # Every failure recovers on attempt 2 after 120 s: p2 = 1, so max_attempts = 2 and the
    # one delay covers the 120 s p90: base = 120 / (2^1 - 1), cap = 120.
    slow = [job(f"s{i}", "fs", gap_s=120.0) for i in range(10)]
    rec = recommend("flaky", slow, NOW)
    assert (rec.max_attempts, rec.backoff) == (2, "exponential")
    assert (rec.base_seconds, rec.cap_seconds) == (120.0, 120.0)


def test_recommend_reaches_past_an_attempt_that_never_succeeds() -> None:
    # Fails twice, then succeeds on attempt 3 every time: p2 = 0 but p3 = 1, so stopping at
    # the first useless attempt would wrongly say max_attempts = 1.
    pattern = [job(f"p{i}", "ffs") for i in range(10)]
    rec = recommend("flaky", pattern, NOW)
    assert rec.max_attempts == 3
    assert rec.non_retryable == ()
