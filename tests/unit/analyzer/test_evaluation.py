"""Evaluation maths, the corpus it runs on, and the one detector wiring it shares with live."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from jobline_analyzer import corpus, evaluation
from jobline_analyzer.failure_rate import FailureRateDetector
from jobline_analyzer.series import BucketInput


def test_corpus_is_deterministic_and_held_out_seeds_are_apart() -> None:
    assert not set(corpus.TUNING_SEEDS) & set(corpus.HELD_OUT_SEEDS)
    assert corpus.seeds(3) == (corpus.TUNING_SEEDS, corpus.HELD_OUT_SEEDS)
    for count in (1, 10, corpus.HELD_OUT_FROM):
        tuning, held_out = corpus.seeds(count)
        assert len(tuning) == len(held_out) == count
        assert max(tuning) < corpus.HELD_OUT_FROM <= min(held_out)
    with pytest.raises(ValueError, match="seeds per split"):
        corpus.seeds(corpus.HELD_OUT_FROM + 1)
    a, b = corpus.generic_series("slow_ramp", 3), corpus.generic_series("slow_ramp", 3)
    assert a == b
    assert corpus.generic_series("slow_ramp", 4).values != a.values
    ((start, end),) = a.anomalies
    ((lo, hi),) = a.windows
    assert lo < start < end < hi


def test_job_week_labels_each_type_but_the_last() -> None:
    week = corpus.job_week(0, days=4)
    assert set(week.buckets) == {p.name for p in corpus.PROFILES}
    assert {i.job_type for i in week.incidents} == {p.name for p in corpus.PROFILES[:-1]}
    assert all(len(b) == 4 * 1440 for b in week.buckets.values())
    for inc in week.incidents:
        assert inc.start >= corpus.WEEK_START + timedelta(days=2)  # after the warm-up


def test_row_maths() -> None:
    row = evaluation.Row("in-sample", "series", "spikes", delays=[])
    s = corpus.Labelled(
        name="x",
        kind="spikes",
        timestamps=tuple(corpus.timestamps(3000)),
        values=tuple(50 + np.where(np.arange(3000) == 2000, 30.0, 0.0)),
        anomalies=((2000, 2001),),
        windows=((1970, 2031),),
    )
    evaluation.score_labelled(s, row)
    out = row.out()
    assert (out["incidents"], out["detected"], out["true"], out["false"]) == (1, 1, 1, 0)
    assert (out["recall"], out["precision"], out["median_delay"]) == (1.0, 1.0, 0.0)
    assert out["false_per_10k"] == 0.0
    empty = evaluation.Row("held-out", "jobs", "stall").out()
    assert (empty["recall"], empty["precision"], empty["median_delay"]) == (None, None, None)


def test_evaluation_feeds_queue_wait_the_starts_like_the_live_loop() -> None:
    # One wiring: a minute with 4 starts (under the queue-wait minimum of 5) is not judged,
    # even when 40 jobs finished in it; evaluation and detection both call feed().
    week = corpus.job_week(1, days=3)
    buckets = [
        BucketInput(b.bucket, b.submitted, 4, b.succeeded, b.retried, 0, b.runtime_p50, 900.0)
        for b in week.buckets["send-email"]
    ]
    found = evaluation.run_job_type("send-email", buckets)
    assert not [f for f in found if f.kind == "queue_wait_drift"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bursty_but_normal_failures_stop_alarming_and_an_incident_still_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    det = FailureRateDetector("acme", "sync-crm")
    start = corpus.WEEK_START
    found, burst = [], 0
    incident = range(3 * 1440, 3 * 1440 + 30)
    for m in range(3 * 1440 + 120):
        if burst == 0 and rng.random() < 1 / 240:
            burst = int(rng.integers(3, 9))
        p = 0.3 if m in incident else 0.15 if burst else 0.01
        burst = max(burst - 1, 0)
        runs = int(rng.poisson(15))
        failed = int(rng.binomial(runs, p))
        if det.update(start + timedelta(minutes=m), runs - failed, failed):
            found.append(m)
    second_half = [m for m in found if 1.5 * 1440 <= m < incident.start]
    assert second_half == []  # its own bursts have been learnt
    assert [m for m in found if m in incident]
