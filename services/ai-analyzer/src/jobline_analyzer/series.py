"""Every detector of one (tenant, job type) series, fed one closed bucket at a time (pure).

This is the one wiring of the detectors: the live detection loop and the evaluation both call
`SeriesDetectors.feed`. Run time and queue wait go through the detector core (seasonal,
calibrated, one finding per episode); failures, stalls and new error classes have count
detectors of their own. The detectors count in minutes: with the default one-minute buckets
their clock is the wall clock; with shorter buckets (tests, demos) they run on a compressed
clock where each bucket is one minute, and findings' windows are mapped back to wall time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from jobline_analyzer.core import Config, Detector
from jobline_analyzer.failure_rate import FailureRateDetector
from jobline_analyzer.findings import KINDS, Finding, Kind, Severity, duration
from jobline_analyzer.new_error_class import NewErrorClassDetector
from jobline_analyzer.rollup import EPOCH
from jobline_analyzer.throughput import ThroughputDetector


@dataclass(frozen=True, slots=True)
class BucketInput:
    """One closed bucket of a series, as the detectors need it."""

    bucket: datetime
    submitted: int = 0
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    runtime_p50: float | None = None
    queue_wait_p50: float | None = None
    errors: Mapping[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Attempts that failed (retried or dead)."""
        return self.retried + self.dead

    @property
    def arrivals(self) -> int:
        """Work that became runnable: new jobs and retries."""
        return self.submitted + self.retried

    @property
    def completions(self) -> int:
        """Attempts that finished, whatever their outcome."""
        return self.succeeded + self.retried + self.dead


@dataclass(frozen=True, slots=True)
class MetricRule:
    """When a latency episode is worth a finding."""

    kind: Kind
    min_ratio: float  # observed over expected
    min_excess_seconds: float
    min_count: int  # observations behind a minute's median for it to count


RUNTIME = MetricRule("runtime_drift", 1.3, 0.0, 1)
# A minute's median queue wait from one or two jobs is one job's luck; backlogs double waits
# in seconds, so a real change is large and seen in enough jobs.
QUEUE_WAIT = MetricRule("queue_wait_drift", 2.0, 5.0, 5)
LATENCY = Config(
    step_seconds=60.0,
    warmup=1440,
    transform="log",
    direction="up",
    level_half_life=720.0,
    rank_half_life=720.0,
    error_half_life=1440.0,
    accept_after=60,
    clear=10,
)


class MetricDetector:
    """Upward drift of a per-minute median latency, through the detector core."""

    def __init__(self, tenant: str, job_type: str, rule: MetricRule) -> None:
        self.tenant, self.job_type, self.rule = tenant, job_type, rule
        self.core = Detector(replace(LATENCY, min_effect=math.log(rule.min_ratio)))
        self.typical = 0.0  # decayed mean count behind a minute's median

    def update(self, t: datetime, seconds: float | None, count: int) -> Finding | None:
        """Add one minute's median; a finding when an episode starts and is big enough."""
        if seconds is None or count < self.rule.min_count:
            return None
        # The median of n jobs has a noise of about 1/sqrt(n): quiet hours are noisier.
        self.typical = count if not self.typical else self.typical + 0.01 * (count - self.typical)
        point = self.core.update(t.timestamp(), seconds, count / self.typical)
        if not point.onset or seconds - point.expected < self.rule.min_excess_seconds:
            return None
        ratio = seconds / point.expected
        severity: Severity = "critical" if ratio >= 2.0 else "warning"
        return Finding(
            tenant=self.tenant,
            job_type=self.job_type,
            kind=self.rule.kind,
            severity=severity,
            window_start=t,
            window_end=t,
            baseline=point.expected,
            observed=seconds,
            score=point.score,
            explanation=self._explain(seconds, point.expected, point.evidence),
        )

    def _explain(self, observed: float, expected: float, evidence: str) -> str:
        how = {"spike": "a jump", "shift": "a level shift", "drift": "a slow drift"}[evidence]
        ratio = observed / expected
        if self.rule.kind == "runtime_drift":
            return (
                f"{self.job_type} runs now take {duration(observed)} (median), {ratio:.1f}x the "
                f"{duration(expected)} expected at this time of day ({how}); check its "
                f"dependencies' latency, input sizes and recent deploys."
            )
        return (
            f"{self.job_type} jobs now wait {duration(observed)} in the queue (median), "
            f"{ratio:.1f}x the {duration(expected)} expected at this time of day ({how}); add "
            f"worker capacity for its queue or look for stuck or slow workers."
        )

    @property
    def active(self) -> bool:
        """Whether an episode is in progress."""
        return self.core.active

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint."""
        return {
            "tenant": self.tenant,
            "job_type": self.job_type,
            "kind": self.rule.kind,
            "core": self.core.to_state(),
            "typical": self.typical,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MetricDetector:
        """Restore from :meth:`to_state` output."""
        rule = RUNTIME if state["kind"] == RUNTIME.kind else QUEUE_WAIT
        det = cls(state["tenant"], state["job_type"], rule)
        det.core = Detector.from_state(state["core"])
        det.typical = float(state["typical"])
        return det


class SeriesDetectors:
    """Failure rate, run-time and queue-wait drift, throughput, new error classes."""

    def __init__(self, tenant: str, job_type: str, bucket_seconds: int = 60) -> None:
        self.tenant = tenant
        self.job_type = job_type
        self.bucket_seconds = bucket_seconds
        self.failures = FailureRateDetector(tenant, job_type)
        self.runtime = MetricDetector(tenant, job_type, RUNTIME)
        self.queue_wait = MetricDetector(tenant, job_type, QUEUE_WAIT)
        self.throughput = ThroughputDetector(tenant, job_type)
        self.errors = NewErrorClassDetector(tenant, job_type)

    def _scale(self) -> float:
        return 60.0 / self.bucket_seconds

    def to_detector_time(self, t: datetime) -> datetime:
        """Wall-clock bucket start -> the detectors' minute clock."""
        if self.bucket_seconds == 60:
            return t
        return EPOCH + (t - EPOCH) * self._scale()

    def to_wall_time(self, t: datetime) -> datetime:
        """The detectors' minute clock -> wall-clock time."""
        if self.bucket_seconds == 60:
            return t
        return EPOCH + (t - EPOCH) / self._scale()

    def feed(self, b: BucketInput) -> list[Finding]:
        """Feed one bucket to every detector; return the findings that start now."""
        t = self.to_detector_time(b.bucket)
        found = [
            self.failures.update(t, b.succeeded, b.failed),
            self.runtime.update(t, b.runtime_p50, b.completions),
            self.queue_wait.update(t, b.queue_wait_p50, b.started),
            self.throughput.update(t, b.arrivals, b.completions),
            self.errors.update(t, b.errors, b.completions),
        ]
        return [self._wall(f) for f in found if f is not None]

    def _wall(self, f: Finding) -> Finding:
        # A window ends where its last bucket ends.
        end = self.to_wall_time(f.window_end) + timedelta(seconds=self.bucket_seconds)
        return replace(f, window_start=self.to_wall_time(f.window_start), window_end=end)

    def active(self) -> dict[Kind, int]:
        """Anomalies in progress by kind (new error classes count each class)."""
        counts: dict[Kind, int] = dict.fromkeys(KINDS, 0)
        counts["failure_rate_spike"] = int(self.failures.active)
        counts["runtime_drift"] = int(self.runtime.active)
        counts["queue_wait_drift"] = int(self.queue_wait.active)
        counts["stall"] = int(self.throughput.stall_active)
        counts["throughput_drop"] = int(self.throughput.drop_active)
        counts["new_error_class"] = len(self.errors.active_classes)
        return counts

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint of every detector."""
        return {
            "tenant": self.tenant,
            "job_type": self.job_type,
            "bucket_seconds": self.bucket_seconds,
            "failures": self.failures.to_state(),
            "runtime": self.runtime.to_state(),
            "queue_wait": self.queue_wait.to_state(),
            "throughput": self.throughput.to_state(),
            "errors": self.errors.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesDetectors:
        """Restore from :meth:`to_state` output."""
        det = cls(state["tenant"], state["job_type"], int(state["bucket_seconds"]))
        det.failures = FailureRateDetector.from_state(state["failures"])
        det.runtime = MetricDetector.from_state(state["runtime"])
        det.queue_wait = MetricDetector.from_state(state["queue_wait"])
        det.throughput = ThroughputDetector.from_state(state["throughput"])
        det.errors = NewErrorClassDetector.from_state(state["errors"])
        return det
