"""Retry maths: does retrying help, how many attempts, how long to wait, is a redrive worth it.

All inputs are attempt histories (dataclasses); nothing here reads a clock or a database.
Per-attempt success uses Wilson intervals (small counts are the norm per error class). Time to
recovery is measured from a job's first failure to its success, with statsmodels'
`SurvfuncRight` (Kaplan-Meier): jobs still retrying are censored at `now` and dead jobs at
their last attempt, so classes that rarely recover do not look fast just because only their
quick successes finish.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from jobline_analyzer.intervals import wilson_interval

Outcome = Literal["succeeded", "failed"]
FinalState = Literal["succeeded", "dead", "retrying", "queued", "running", "cancelled"]
BackoffKind = Literal["none", "constant", "exponential"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One finished attempt of a job."""

    number: int
    outcome: Outcome
    started_at: datetime
    finished_at: datetime
    error_class: str | None = None


@dataclass(frozen=True, slots=True)
class JobHistory:
    """A job's attempts so far and the state it is in now."""

    job_id: str
    job_type: str
    final_state: FinalState
    attempts: tuple[Attempt, ...]

    @property
    def first_failure(self) -> Attempt | None:
        """The first failed attempt, which decides the job's error class."""
        return next((a for a in self.attempts if a.outcome == "failed"), None)

    @property
    def last_failure(self) -> Attempt | None:
        """The most recent failed attempt (what a dead job died of)."""
        return next((a for a in reversed(self.attempts) if a.outcome == "failed"), None)

    @property
    def error_class(self) -> str | None:
        """Error class of the first failure; None when the job never failed."""
        first = self.first_failure
        return None if first is None else first.error_class or "unknown"


@dataclass(frozen=True, slots=True)
class AttemptStat:
    """P(attempt k succeeds | the k-1 before it failed), with a Wilson interval."""

    attempt: int
    trials: int
    successes: int
    p: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class RecoveryTime:
    """Kaplan-Meier summary of first failure -> success; None where not reached."""

    jobs: int
    recovered: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True, slots=True)
class ClassReport:
    """How one error class of one job type responds to retries."""

    job_type: str
    error_class: str
    jobs: int
    decided: int
    recovered: int
    recovery_p: float
    recovery_low: float
    recovery_high: float
    attempts: tuple[AttemptStat, ...]
    time_to_recovery: RecoveryTime
    retryable: bool


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A retry policy for one job type; advisory until someone applies it."""

    job_type: str
    max_attempts: int
    backoff: BackoffKind
    base_seconds: float
    cap_seconds: float
    non_retryable: tuple[str, ...]
    attempts: tuple[AttemptStat, ...]
    classes: tuple[ClassReport, ...]
    explanation: str


@dataclass(frozen=True, slots=True)
class RedriveVerdict:
    """Whether redriving a dead job now is likely to succeed."""

    job_id: str
    error_class: str
    likely: bool
    p_attempt: float
    low: float
    p_redrive: float
    trials: int
    reason: str


def attempt_success(
    histories: Iterable[JobHistory], confidence: float = 0.95
) -> tuple[AttemptStat, ...]:
    """Per attempt number k: jobs that reached attempt k, and how many succeeded on it."""
    trials: dict[int, int] = {}
    wins: dict[int, int] = {}
    for job in histories:
        for a in job.attempts:
            trials[a.number] = trials.get(a.number, 0) + 1
            wins[a.number] = wins.get(a.number, 0) + (a.outcome == "succeeded")
    stats = []
    for k in sorted(trials):
        low, high = wilson_interval(wins[k], trials[k], confidence)
        stats.append(AttemptStat(k, trials[k], wins[k], wins[k] / trials[k], low, high))
    return tuple(stats)


def time_to_recovery(histories: Iterable[JobHistory], now: datetime) -> RecoveryTime:
    """Kaplan-Meier time from first failure to success; unfinished jobs are censored."""
    durations: list[float] = []
    events: list[int] = []
    for job in histories:
        first = job.first_failure
        if first is None:
            continue
        success = next((a for a in job.attempts if a.outcome == "succeeded"), None)
        if success is not None:
            end, event = success.finished_at, 1
        elif job.final_state in ("dead", "cancelled"):
            end, event = job.attempts[-1].finished_at, 0
        else:
            end, event = now, 0
        durations.append(max((end - first.finished_at).total_seconds(), 0.0))
        events.append(event)
    recovered = sum(events)
    if recovered == 0:
        return RecoveryTime(len(durations), 0, None, None)
    from statsmodels.duration.survfunc import SurvfuncRight

    with warnings.catch_warnings():
        # Tiny samples make statsmodels warn about its variance estimate; quantiles are fine.
        warnings.simplefilter("ignore", RuntimeWarning)
        sf = SurvfuncRight(np.asarray(durations), np.asarray(events))
        median, p90 = float(sf.quantile(0.5)), float(sf.quantile(0.9))
    return RecoveryTime(
        jobs=len(durations),
        recovered=recovered,
        median_seconds=None if math.isnan(median) else median,
        p90_seconds=None if math.isnan(p90) else p90,
    )


def class_reports(
    histories: Sequence[JobHistory],
    now: datetime,
    *,
    confidence: float = 0.95,
    min_decided: int = 10,
    never_recovers_below: float = 0.1,
) -> tuple[ClassReport, ...]:
    """One report per (job type, error class of first failure).

    A class is non-retryable when at least `min_decided` of its jobs have finished (succeeded
    or dead) and the upper Wilson bound of its recovery rate is below `never_recovers_below`.
    """
    groups: dict[tuple[str, str], list[JobHistory]] = {}
    for job in histories:
        cls = job.error_class
        if cls is not None:
            groups.setdefault((job.job_type, cls), []).append(job)
    reports = []
    for (job_type, cls), jobs in sorted(groups.items()):
        decided = [j for j in jobs if j.final_state in ("succeeded", "dead")]
        recovered = sum(j.final_state == "succeeded" for j in decided)
        low, high = wilson_interval(recovered, len(decided), confidence)
        retries = [
            JobHistory(j.job_id, j.job_type, j.final_state, tuple(a for a in j.attempts[1:]))
            for j in jobs
        ]
        reports.append(
            ClassReport(
                job_type=job_type,
                error_class=cls,
                jobs=len(jobs),
                decided=len(decided),
                recovered=recovered,
                recovery_p=recovered / len(decided) if decided else 0.0,
                recovery_low=low,
                recovery_high=high,
                attempts=attempt_success(retries, confidence),
                time_to_recovery=time_to_recovery(jobs, now),
                retryable=not (len(decided) >= min_decided and high < never_recovers_below),
            )
        )
    return tuple(reports)


def recommend(
    job_type: str,
    histories: Sequence[JobHistory],
    now: datetime,
    *,
    current_max_attempts: int = 3,
    min_gain: float = 0.02,
    min_trials: int = 5,
    max_attempts_cap: int = 25,
    confidence: float = 0.95,
) -> Recommendation:
    """Recommend max_attempts, backoff and non-retryable classes for one job type.

    max_attempts: the last attempt k that would still rescue at least `min_gain` of
    first-attempt failures (P(reach k) * P(k succeeds | reached)); beyond the attempts
    observed with `min_trials` jobs, the pooled retry success rate is extrapolated.
    Backoff: the delays before the last attempt should add up to the 90th percentile of time
    to recovery: constant when that is within 10 s, else exponential from a base that doubles.
    """
    jobs = [j for j in histories if j.job_type == job_type]
    classes = class_reports(jobs, now, confidence=confidence)
    non_retryable = tuple(c.error_class for c in classes if not c.retryable)
    overall = attempt_success(jobs, confidence)
    retryable_jobs = [j for j in jobs if j.error_class not in non_retryable]
    retry_stats = [s for s in attempt_success(retryable_jobs, confidence) if s.attempt >= 2]
    failures = [j for j in retryable_jobs if j.first_failure is not None]
    if not failures:
        tail = f"; make {', '.join(non_retryable)} non-retryable." if non_retryable else "."
        return Recommendation(
            job_type=job_type,
            max_attempts=current_max_attempts,
            backoff="exponential",
            base_seconds=1.0,
            cap_seconds=60.0,
            non_retryable=non_retryable,
            attempts=overall,
            classes=classes,
            explanation=f"{job_type} has no retryable failures on record; keep its policy{tail}",
        )

    by_k = {s.attempt: s for s in retry_stats if s.trials >= min_trials}
    pooled_trials = sum(s.trials for s in retry_stats)
    pooled = sum(s.successes for s in retry_stats) / pooled_trials if pooled_trials else 0.0
    # The last attempt whose gain is still worth it, not the first that is not: a job type
    # that fails twice deterministically and then succeeds has a zero gain at attempt 2 and
    # a large one at attempt 3.
    remaining, reach, max_attempts = 1.0, 1.0, 1
    for k in range(2, max_attempts_cap + 1):
        p = by_k[k].p if k in by_k else pooled
        if reach * p >= min_gain:
            max_attempts, remaining = k, reach * (1 - p)
        reach *= 1 - p
        if reach < min_gain:
            break

    ttr = time_to_recovery(failures, now)
    target = ttr.p90_seconds or ttr.median_seconds
    if max_attempts <= 1:
        kind: BackoffKind = "none"
        base = cap = 0.0
    elif target is None or target <= 10.0:
        kind = "constant"
        base = cap = max(1.0, (target or 1.0) / (max_attempts - 1))
    else:
        kind = "exponential"
        base = max(1.0, target / (2 ** (max_attempts - 1) - 1))
        cap = max(base, target)
    rescued = 1.0 - remaining
    explanation = (
        f"{job_type}: retries rescue about {rescued:.0%} of first-attempt failures within "
        f"{max_attempts} attempts (each further attempt would add under {min_gain:.0%}); "
        f"recovery takes {_secs(ttr.median_seconds)} at the median and {_secs(ttr.p90_seconds)} "
        f"at the 90th percentile, so use {kind} backoff"
        + (f" from {base:.0f} s capped at {cap:.0f} s" if kind != "none" else "")
        + (f"; make {', '.join(non_retryable)} non-retryable." if non_retryable else ".")
    )
    return Recommendation(
        job_type=job_type,
        max_attempts=max_attempts,
        backoff=kind,
        base_seconds=round(base, 1),
        cap_seconds=round(cap, 1),
        non_retryable=non_retryable,
        attempts=overall,
        classes=classes,
        explanation=explanation,
    )


def redrive_likely(
    dead: JobHistory,
    histories: Sequence[JobHistory],
    now: datetime,
    *,
    lookback: timedelta = timedelta(hours=1),
    max_attempts: int = 3,
    min_trials: int = 3,
    confidence: float = 0.95,
) -> RedriveVerdict:
    """Would a redrive now succeed? Judged on recent retries of the same type and error class.

    Evidence: attempts after the first (k >= 2) that finished in the last `lookback`, of jobs of
    the same type whose first failure had the dead job's last error class. A redrive gets
    `max_attempts` fresh attempts, so it is likely when 1 - (1 - low)^max_attempts >= 0.5,
    with `low` the Wilson lower bound of the recent per-attempt success rate.
    """
    last = dead.last_failure
    cls = (last.error_class or "unknown") if last else "unknown"
    since = now - lookback
    trials = wins = 0
    for job in histories:
        if job.job_type != dead.job_type or job.job_id == dead.job_id or job.error_class != cls:
            continue
        for a in job.attempts:
            if a.number >= 2 and since <= a.finished_at <= now:
                trials += 1
                wins += a.outcome == "succeeded"
    if trials < min_trials:
        return RedriveVerdict(
            dead.job_id, cls, False, 0.0, 0.0, 0.0, trials,
            f"only {trials} recent retries of '{cls}' for {dead.job_type}; not enough evidence "
            f"that it recovers, so hold the redrive.",
        )  # fmt: skip
    p = wins / trials
    low, _ = wilson_interval(wins, trials, confidence)
    p_redrive = 1 - (1 - low) ** max_attempts
    likely = p_redrive >= 0.5
    verdict = "redrive it now" if likely else "hold the redrive until the cause is fixed"
    return RedriveVerdict(
        dead.job_id,
        cls,
        likely,
        p,
        low,
        p_redrive,
        trials,
        f"{wins} of {trials} retries of '{cls}' for {dead.job_type} succeeded in the last "
        f"{lookback.total_seconds() / 60:.0f} min (at least {p_redrive:.0%} chance within "
        f"{max_attempts} attempts); {verdict}.",
    )


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} s"
