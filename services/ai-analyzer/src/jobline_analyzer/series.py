"""Every detector of one (tenant, job type) series, fed one closed bucket at a time (pure).

The detectors count in minutes. With the default one-minute buckets their clock is the wall
clock; with shorter buckets (tests, demos) they run on a compressed clock where each bucket
is one minute, and findings' windows are mapped back to wall-clock time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from jobline_analyzer.drift import DriftDetector
from jobline_analyzer.failure_rate import FailureRateDetector
from jobline_analyzer.findings import KINDS, Finding, Kind
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


class SeriesDetectors:
    """Failure rate, run-time and queue-wait drift, throughput, new error classes."""

    def __init__(self, tenant: str, job_type: str, bucket_seconds: int = 60) -> None:
        self.tenant = tenant
        self.job_type = job_type
        self.bucket_seconds = bucket_seconds
        self.failures = FailureRateDetector(tenant, job_type)
        self.runtime = DriftDetector(tenant, job_type, "runtime_drift")
        self.queue_wait = DriftDetector(tenant, job_type, "queue_wait_drift")
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
            self.runtime.update(t, b.runtime_p50),
            self.queue_wait.update(t, b.queue_wait_p50, b.started),
            self.throughput.update(t, b.arrivals, b.completions),
            self.errors.update(t, b.errors),
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
        det.runtime = DriftDetector.from_state(state["runtime"])
        det.queue_wait = DriftDetector.from_state(state["queue_wait"])
        det.throughput = ThroughputDetector.from_state(state["throughput"])
        det.errors = NewErrorClassDetector.from_state(state["errors"])
        return det
