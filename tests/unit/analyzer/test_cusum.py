"""The CUSUM chart of the detector core (issue 17: level shifts the EWMA charts miss)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from jobline_analyzer.core import Detector
from jobline_analyzer.cusum import LEAK, Cusum, prior
from jobline_analyzer.score import SCORE, score_series

from .test_core import DAY, STEP, T0, ar1, two_level_day


def score_flags(values: np.ndarray) -> list[int]:
    rows = [(str(T0 + timedelta(seconds=i * STEP)), float(v)) for i, v in enumerate(values)]
    return [i for i, p in enumerate(score_series(rows, len(rows))) if p.is_anomaly]


@pytest.mark.parametrize("seed", [1, 9, 18])
def test_a_level_shift_after_the_first_week_is_found_by_the_score_command(seed: int) -> None:
    # 4 sd of AR(0.7) noise on a daily cycle, on day 9: without the CUSUM these three
    # series were never flagged (the EWMA charts' fitted tails are too wide for it).
    rng = np.random.default_rng(seed)
    n, at = 12 * DAY, 9 * DAY + 100
    values = 30 + 3 * np.sin(np.arange(n) * 2 * np.pi / DAY) + ar1(rng, n, 0.7)
    values[at:] += 4
    found = score_flags(values)
    assert found
    assert at <= found[0] < at + 40


def test_the_innovations_are_whitened_so_wander_does_not_fill_the_sums() -> None:
    # AR(0.95) noise with no shift: summed raw, its long excursions are shifts of several sd.
    z = ar1(np.random.default_rng(3), 20_000, 0.95)
    whitened, raw = Cusum(), Cusum()
    heights = [(whitened.step(v, 0.95, 0.5, "both"), raw.step(v, 0.0, 0.5, "both")) for v in z]
    assert max(h for h, _ in heights) < 0.25 * max(h for _, h in heights)


def test_a_persistent_shift_fills_the_sum_up_to_its_leak_bound() -> None:
    chart = Cusum()
    for _ in range(500):
        height = chart.step(1.5, 0.0, 0.5, "both")
    assert height == pytest.approx((1.5 - 0.5) / (1 - LEAK))
    assert chart.step(1.5, 0.0, 0.5, "down") == 0.0  # the other side stayed empty


def test_the_prior_tail_is_not_thinner_than_the_null() -> None:
    # With unit-normal z and no shift, points the prior calls p < 1e-3 are at most that rare.
    tail, chart = prior(0.5, 0.02), Cusum()
    z = np.random.default_rng(4).normal(0, 1, 200_000)
    ps = [tail.p(chart.step(float(v), 0.0, 0.5, "both"), 0.02) for v in z]
    assert tail.t == pytest.approx(math.log(50) - 1.166)
    assert sum(p < 1e-3 for p in ps) / len(ps) <= 1e-3


def test_the_chart_arms_after_its_wait_and_starts_empty() -> None:
    chart = Cusum(up=9.0)
    assert not chart.arm(100.0, 200.0)
    assert chart.up == 9.0
    assert not chart.arm(200.0, 200.0)  # arms now; what it gathered meanwhile is dropped
    assert (chart.armed, chart.up) == (True, 0.0)
    assert chart.arm(300.0, 200.0)


def test_a_checkpoint_from_before_the_cusum_restores_and_resumes() -> None:
    det = Detector(SCORE)
    values = two_level_day(np.random.default_rng(2), days=2)
    for i, v in enumerate(values):
        det.update(T0.timestamp() + i * STEP, float(v))
    state = json.loads(json.dumps(det.to_state()))
    del state["state"]["tails"][4], state["state"]["cusum"], state["state"]["first_t"]
    del state["config"]["cusum_k"]
    restored = Detector.from_state(state)
    assert len(restored.s.tails) == len(det.s.tails)
    assert restored.update(T0.timestamp() + 2 * DAY * STEP, 20.0).score >= 0.0


def test_a_checkpoint_with_the_cusum_resumes_identically() -> None:
    values = two_level_day(np.random.default_rng(8), days=10)
    values[9 * DAY :] += 6
    config = replace(SCORE, warmup=750)
    straight, det, resumed = Detector(config), Detector(config), []
    expected = [straight.update(T0.timestamp() + i * STEP, float(v)) for i, v in enumerate(values)]
    for i, v in enumerate(values):
        if i in (10, 2400, 9 * DAY + 1):
            det = Detector.from_state(json.loads(json.dumps(det.to_state())))
        resumed.append(det.update(T0.timestamp() + i * STEP, float(v)))
    assert resumed == expected
    assert any(p.flagged for p in expected[9 * DAY : 9 * DAY + 20])
