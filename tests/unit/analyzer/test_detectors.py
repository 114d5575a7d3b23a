"""Each live detector on synthetic series: incident found in time, quiet series silent."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from jobline_analyzer.failure_rate import FailureRateDetector
from jobline_analyzer.findings import Finding
from jobline_analyzer.new_error_class import NewErrorClassDetector
from jobline_analyzer.series import RUNTIME, MetricDetector
from jobline_analyzer.throughput import ThroughputDetector

T0 = datetime(2026, 1, 5, tzinfo=UTC)
MINUTES = 360
INCIDENT = 240  # minute the incident starts
SEEDS = [0, 1, 2, 3]
# Latency detectors warm up for a day: their incident comes on the second day.
LATENCY_MINUTES, LATENCY_INCIDENT = 2 * 1440, 1440 + 600


def minute(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


def failure_series(seed: int, incident: bool) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(MINUTES):
        runs = int(rng.poisson(20))
        p = 0.3 if incident and m >= INCIDENT else 0.02
        failed = int(rng.binomial(runs, p))
        rows.append((runs - failed, failed))
    return rows


def bursty_failures(seed: int, minutes: int = 2 * 1440) -> list[tuple[int, int]]:
    """A bursty but healthy type (like the corpus's sync-crm): 1% failures, and about six
    times a day a normal 3-8 minute burst at 15%."""
    rng = np.random.default_rng(seed)
    rows, left = [], 0
    for _ in range(minutes):
        runs = int(rng.poisson(15))
        if left == 0 and rng.random() < 1 / 240:
            left = int(rng.integers(3, 9))
        failed = int(rng.binomial(runs, 0.15 if left else 0.01))
        left = max(left - 1, 0)
        rows.append((runs - failed, failed))
    return rows


def latency_series(seed: int, incident: bool) -> list[float]:
    rng = np.random.default_rng(seed)
    n = LATENCY_MINUTES
    shift = [1.8 if incident and m >= LATENCY_INCIDENT else 1.0 for m in range(n)]
    season = [1 + 0.1 * math.sin(2 * math.pi * m / 1440) for m in range(n)]
    return [2.0 * s * k * math.exp(rng.normal(0, 0.1)) for s, k in zip(season, shift, strict=True)]


def throughput_series(seed: int, incident: bool) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    rows, backlog = [], 0
    for m in range(MINUTES):
        arrivals = int(rng.poisson(10))
        backlog += arrivals
        capacity = 0 if incident and INCIDENT <= m < INCIDENT + 30 else int(rng.poisson(30))
        done = min(backlog, capacity)
        backlog -= done
        rows.append((arrivals, done))
    return rows


def error_series(seed: int, incident: bool) -> list[dict[str, int]]:
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(MINUTES):
        row = {"TimeoutError": int(rng.poisson(0.5)), "KeyError: <str>": int(rng.poisson(0.2))}
        if incident and m >= INCIDENT:
            row["ConnectionRefusedError: connect to <ip> refused"] = int(rng.poisson(2))
        rows.append(row)
    return rows


def run_failures(rows: list[tuple[int, int]]) -> list[tuple[int, Finding]]:
    det = FailureRateDetector("acme", "send-email")
    return [(m, f) for m, r in enumerate(rows) if (f := det.update(minute(m), *r))]


def run_drift(values: list[float]) -> list[tuple[int, Finding]]:
    det = MetricDetector("acme", "resize-image", RUNTIME)
    return [(m, f) for m, v in enumerate(values) if (f := det.update(minute(m), v, 20))]


def run_throughput(rows: list[tuple[int, int]]) -> list[tuple[int, Finding]]:
    det = ThroughputDetector("acme", "sync-crm")
    return [(m, f) for m, r in enumerate(rows) if (f := det.update(minute(m), *r))]


def run_errors(rows: list[dict[str, int]]) -> list[tuple[int, Finding]]:
    det = NewErrorClassDetector("acme", "charge-card")
    return [(m, f) for m, r in enumerate(rows) if (f := det.update(minute(m), r, 20))]


@pytest.mark.parametrize("seed", SEEDS)
def test_failure_spike_found_within_3_minutes(seed: int) -> None:
    found = run_failures(failure_series(seed, incident=True))
    assert found, "spike not found"
    m, finding = found[0]
    assert INCIDENT <= m <= INCIDENT + 3
    assert finding.kind == "failure_rate_spike"
    assert finding.baseline < 0.05
    # Flagged at once, on the rule's practical size: twice the baseline and 5 points above it.
    assert finding.observed >= max(2 * finding.baseline, finding.baseline + 0.05)
    assert "send-email failed" in finding.explanation
    assert len(found) == 1  # one finding per incident, not one per minute


@pytest.mark.parametrize("seed", SEEDS)
def test_a_bursty_type_in_its_first_two_days_does_not_cry_wolf(seed: int) -> None:
    # Its tails have not met its bursts yet. Before the young rule these seeds gave 4-5
    # findings each in two days (one per burst); the very first burst may still be news.
    assert len(run_failures(bursty_failures(seed))) <= 1


@pytest.mark.parametrize("seed", SEEDS)
def test_runtime_step_found_within_8_minutes(seed: int) -> None:
    found = run_drift(latency_series(seed, incident=True))
    assert found
    m, finding = found[0]
    # The effect-size guard (a 30% rise, averaged over about ten minutes) takes a few points.
    assert LATENCY_INCIDENT <= m <= LATENCY_INCIDENT + 8
    assert finding.kind == "runtime_drift"
    assert 1.5 < finding.observed / finding.baseline < 2.3


@pytest.mark.parametrize("seed", SEEDS)
def test_stall_found_within_3_minutes(seed: int) -> None:
    found = run_throughput(throughput_series(seed, incident=True))
    assert found
    m, finding = found[0]
    assert INCIDENT <= m <= INCIDENT + 3
    assert finding.kind == "stall"
    assert finding.severity == "critical"


@pytest.mark.parametrize("seed", SEEDS)
def test_new_error_class_found_within_5_minutes(seed: int) -> None:
    found = run_errors(error_series(seed, incident=True))
    assert found
    m, finding = found[0]
    assert INCIDENT <= m <= INCIDENT + 5
    assert finding.error_class == "ConnectionRefusedError: connect to <ip> refused"
    assert len(found) == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_quiet_series_give_no_findings(seed: int) -> None:
    assert run_failures(failure_series(seed, incident=False)) == []
    assert run_drift(latency_series(seed, incident=False)) == []
    assert run_throughput(throughput_series(seed, incident=False)) == []
    assert run_errors(error_series(seed, incident=False)) == []


def test_one_failure_in_two_runs_is_not_a_spike() -> None:
    det = FailureRateDetector("acme", "send-email")
    for m in range(120):
        det.update(minute(m), 49, 1)
    assert det.update(minute(120), 1, 1) is None
    assert det.update(minute(121), 0, 0) is None


def test_no_stall_without_arrivals() -> None:
    det = ThroughputDetector("acme", "sync-crm")
    for m in range(60):
        det.update(minute(m), 10, 10)
    assert all(det.update(minute(60 + m), 0, 0) is None for m in range(60))


def _roundtrip(det: object) -> object:
    state = det.to_state()  # type: ignore[attr-defined]
    return type(det).from_state(json.loads(json.dumps(state)))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("make", "series", "feed"),
    [
        (
            lambda: FailureRateDetector("a", "t"),
            failure_series(5, True),
            lambda d, m, r: d.update(minute(m), *r),
        ),
        (
            lambda: MetricDetector("a", "t", RUNTIME),
            latency_series(5, True),
            lambda d, m, r: d.update(minute(m), r, 20),
        ),
        (
            lambda: ThroughputDetector("a", "t"),
            throughput_series(5, True),
            lambda d, m, r: d.update(minute(m), *r),
        ),
        (
            lambda: NewErrorClassDetector("a", "t"),
            error_series(5, True),
            lambda d, m, r: d.update(minute(m), r, 20),
        ),
    ],
)
def test_state_roundtrip_mid_stream_gives_identical_results(
    make: Callable[[], Any], series: list[Any], feed: Callable[[Any, int, Any], Finding | None]
) -> None:
    straight = make()
    expected = [feed(straight, m, r) for m, r in enumerate(series)]
    det = make()
    got = []
    for m, r in enumerate(series):
        if m in (INCIDENT - 1, INCIDENT + 2, 100, LATENCY_INCIDENT + 2):  # before, during, early
            det = _roundtrip(det)
        got.append(feed(det, m, r))
    assert got == expected
    assert any(f is not None for f in got)


def test_finding_dict_roundtrip() -> None:
    [(_, finding)] = run_failures(failure_series(0, incident=True))
    data = json.loads(json.dumps(finding.to_dict()))
    assert Finding.from_dict(data) == finding


def test_a_young_type_gets_its_spike_after_a_few_quiet_minutes() -> None:
    # The baseline learns each minute as it leaves the 5-minute window, not the 20-minute one.
    det = FailureRateDetector("acme", "flaky")
    for m in range(8):
        assert det.update(minute(m), 20, 0) is None
    found = [m for m in range(8, 14) if det.update(minute(m), 8, 12)]
    assert found
    assert found[0] <= 9
