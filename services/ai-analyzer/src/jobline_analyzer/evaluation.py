"""Replay simulated days through the detectors and score them against the ground truth.

Run `python -m jobline_analyzer.evaluation [--seeds N]`; prints JSON. Matching rules:
- an incident is *detected* when a finding of one of its primary kinds (`PRIMARY`) for its job
  type ends within [start, end + grace]; its delay is that finding's end minus the start;
- a finding is *true* when some incident of its job type that `EXPLAINS` its kind covers its
  end time (with the same grace); otherwise it is a false alarm.
Precision per incident kind counts the findings of that kind's primary kinds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from jobline_analyzer.drift import DriftDetector
from jobline_analyzer.failure_rate import FailureRateDetector
from jobline_analyzer.findings import Finding, Kind
from jobline_analyzer.new_error_class import NewErrorClassDetector
from jobline_analyzer.simulate import INCIDENT_KINDS, Day, Incident, IncidentKind, simulate_day
from jobline_analyzer.throughput import ThroughputDetector

GRACE = timedelta(minutes=15)
PRIMARY: dict[IncidentKind, frozenset[Kind]] = {
    "failure_burst": frozenset({"failure_rate_spike"}),
    "latency_shift": frozenset({"runtime_drift"}),
    "stall": frozenset({"stall", "throughput_drop"}),
    "new_error_class": frozenset({"new_error_class"}),
}
# Secondary effects that are real, not false alarms: slower jobs back the queue up; a stall
# leaves a backlog that waits; a new error class raises the failure rate.
EXPLAINS: dict[IncidentKind, frozenset[Kind]] = {
    "failure_burst": PRIMARY["failure_burst"],
    "latency_shift": PRIMARY["latency_shift"] | {"queue_wait_drift", "throughput_drop"},
    "stall": PRIMARY["stall"] | {"queue_wait_drift"},
    "new_error_class": PRIMARY["new_error_class"] | {"failure_rate_spike"},
}


@dataclass(slots=True)
class _Detectors:
    failures: FailureRateDetector
    runtime: DriftDetector
    queue_wait: DriftDetector
    throughput: ThroughputDetector
    errors: NewErrorClassDetector


def run_detectors(day: Day) -> list[Finding]:
    """Feed every rollup of the day through a fresh set of detectors per job type."""
    detectors: dict[str, _Detectors] = {}
    findings: list[Finding] = []
    for r in day.rollups:
        d = detectors.get(r.job_type)
        if d is None:
            d = detectors[r.job_type] = _Detectors(
                FailureRateDetector(r.tenant, r.job_type),
                DriftDetector(r.tenant, r.job_type, "runtime_drift"),
                DriftDetector(r.tenant, r.job_type, "queue_wait_drift"),
                ThroughputDetector(r.tenant, r.job_type),
                NewErrorClassDetector(r.tenant, r.job_type),
            )
        done = r.succeeded + r.failed
        for found in (
            d.failures.update(r.minute, r.succeeded, r.failed),
            d.runtime.update(r.minute, r.runtime_p50),
            d.queue_wait.update(r.minute, r.queue_wait_p50, done),
            d.throughput.update(r.minute, r.arrivals, done),
            d.errors.update(r.minute, r.errors),
        ):
            if found is not None:
                findings.append(found)
    return findings


def _covers(incident: Incident, finding: Finding) -> bool:
    return (
        incident.job_type == finding.job_type
        and incident.start <= finding.window_end <= incident.end + GRACE
    )


def evaluate(seeds: Sequence[int]) -> dict[str, Any]:
    """Precision, recall and median delay per incident kind over the given seeds."""
    started = time.perf_counter()
    delays: dict[str, list[float]] = {k: [] for k in INCIDENT_KINDS}
    totals = dict.fromkeys(INCIDENT_KINDS, 0)
    by_kind_true: dict[str, int] = {}
    by_kind_false: dict[str, int] = {}
    quiet_alarms = 0
    for seed in seeds:
        day = simulate_day(seed)
        findings = run_detectors(day)
        for inc in day.incidents:
            totals[inc.kind] += 1
            hits = [f for f in findings if f.kind in PRIMARY[inc.kind] and _covers(inc, f)]
            if hits:
                first = min(f.window_end for f in hits)
                delays[inc.kind].append((first - inc.start).total_seconds() / 60)
        for f in findings:
            true = any(f.kind in EXPLAINS[i.kind] and _covers(i, f) for i in day.incidents)
            bucket = by_kind_true if true else by_kind_false
            bucket[f.kind] = bucket.get(f.kind, 0) + 1
            incident_types = {i.job_type for i in day.incidents}
            quiet_alarms += f.job_type not in incident_types
    per_incident: dict[str, Any] = {}
    for kind in INCIDENT_KINDS:
        tp = sum(by_kind_true.get(k, 0) for k in PRIMARY[kind])
        fp = sum(by_kind_false.get(k, 0) for k in PRIMARY[kind])
        found = len(delays[kind])
        per_incident[kind] = {
            "incidents": totals[kind],
            "detected": found,
            "recall": round(found / totals[kind], 3) if totals[kind] else None,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "findings_true": tp,
            "findings_false": fp,
            "median_delay_min": statistics.median(delays[kind]) if delays[kind] else None,
        }
    kinds = sorted(set(by_kind_true) | set(by_kind_false))
    return {
        "seeds": list(seeds),
        "job_type_days": len(seeds) * 6,
        "per_incident_kind": per_incident,
        "findings_by_kind": {
            k: {"true": by_kind_true.get(k, 0), "false": by_kind_false.get(k, 0)} for k in kinds
        },
        "false_alarms_on_quiet_type": quiet_alarms,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Print the evaluation as JSON."""
    parser = argparse.ArgumentParser(prog="python -m jobline_analyzer.evaluation")
    parser.add_argument("--seeds", type=int, default=3, help="number of simulated days")
    args = parser.parse_args(argv)
    print(json.dumps(evaluate(range(args.seeds)), indent=2))


if __name__ == "__main__":
    main()
