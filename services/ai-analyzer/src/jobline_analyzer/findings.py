"""What a detector reports: one anomaly for one job type, in words a person can act on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

Kind = Literal[
    "failure_rate_spike",
    "runtime_drift",
    "queue_wait_drift",
    "throughput_drop",
    "stall",
    "new_error_class",
]
Severity = Literal["info", "warning", "critical"]

KINDS: tuple[Kind, ...] = get_args(Kind)
SEVERITIES: tuple[Severity, ...] = get_args(Severity)


@dataclass(frozen=True, slots=True)
class Finding:
    """An anomaly for one tenant and job type over a window of time."""

    tenant: str
    job_type: str
    kind: Kind
    severity: Severity
    window_start: datetime
    window_end: datetime
    baseline: float
    observed: float
    score: float
    explanation: str
    error_class: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (the CloudEvent `data` and the API body)."""
        return {
            "tenant": self.tenant,
            "job_type": self.job_type,
            "kind": self.kind,
            "severity": self.severity,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "baseline": self.baseline,
            "observed": self.observed,
            "score": self.score,
            "explanation": self.explanation,
            "error_class": self.error_class,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Inverse of `to_dict`."""
        return cls(
            tenant=data["tenant"],
            job_type=data["job_type"],
            kind=data["kind"],
            severity=data["severity"],
            window_start=datetime.fromisoformat(data["window_start"]),
            window_end=datetime.fromisoformat(data["window_end"]),
            baseline=float(data["baseline"]),
            observed=float(data["observed"]),
            score=float(data["score"]),
            explanation=data["explanation"],
            error_class=data.get("error_class"),
        )


def percent(rate: float) -> str:
    """A rate as a short percentage for explanations: 0.341 -> '34%', 0.004 -> '0.4%'."""
    value = rate * 100
    if value >= 10 or value == 0:
        return f"{value:.0f}%"
    return f"{value:.1f}%"


def duration(seconds: float) -> str:
    """Seconds as a short human duration for explanations."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
