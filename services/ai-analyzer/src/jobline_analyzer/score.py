"""Score a `timestamp,value` series (NAB format) with the generic detector.

Output rows are `timestamp,value,score,is_anomaly`: score in [0, 1], is_anomaly 0/1. The first
`probation` fraction of the series (15%, as in NAB) only trains the detector and is never
flagged. Streaming, no look-ahead: each score uses only earlier points.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from jobline_analyzer.univariate import UnivariateConfig, UnivariateDetector

PROBATION_FRACTION = 0.15


@dataclass(frozen=True, slots=True)
class ScoredPoint:
    """One output row."""

    timestamp: str
    value: float
    score: float
    is_anomaly: bool


def config_for(length: int, probation_fraction: float = PROBATION_FRACTION) -> UnivariateConfig:
    """Detector settings scaled to the series: window = probation, cooldown = 1/5 of it."""
    probation = int(length * probation_fraction)
    window = min(max(probation, 50), 1000)
    return UnivariateConfig(
        window=window,
        probation=probation,
        min_points=min(20, max(probation, 5)),
        cooldown=max(5, probation // 5),
    )


def score_series(
    rows: Iterable[tuple[str, float]], length: int, config: UnivariateConfig | None = None
) -> Iterator[ScoredPoint]:
    """Score `(timestamp, value)` rows in order; `length` sizes the probation period."""
    detector = UnivariateDetector(config or config_for(length))
    for timestamp, value in rows:
        score, flagged = detector.step(value)
        yield ScoredPoint(timestamp, value, score, flagged)


def read_series(stream: TextIO) -> list[tuple[str, float]]:
    """Read a `timestamp,value` CSV with a header; unparsable values become NaN."""
    reader = csv.DictReader(stream)
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "timestamp" not in fields or "value" not in fields:
        raise ValueError("expected a CSV with 'timestamp' and 'value' columns")
    ts_key = (reader.fieldnames or [])[fields.index("timestamp")]
    value_key = (reader.fieldnames or [])[fields.index("value")]
    rows: list[tuple[str, float]] = []
    for row in reader:
        try:
            value = float(row[value_key])
        except (TypeError, ValueError):
            value = float("nan")
        rows.append((row[ts_key], value))
    return rows


def write_scores(points: Iterable[ScoredPoint], stream: TextIO) -> None:
    """Write `timestamp,value,score,is_anomaly` rows with a header."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["timestamp", "value", "score", "is_anomaly"])
    for p in points:
        writer.writerow([p.timestamp, repr(p.value), f"{p.score:.6f}", int(p.is_anomaly)])
