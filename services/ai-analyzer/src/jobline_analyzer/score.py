"""Score a `timestamp,value` series (NAB format) with the detector core.

Output rows are `timestamp,value,score,is_anomaly`: the score is the core's calibrated
`-log10(p) / 8` in [0, 1] (0.5 is p = 1e-4 on every series), is_anomaly marks an episode's
onset or a far stronger point inside it. The warm-up is bounded: 15% of the series, at most
750 points (NAB's probation rule), and only trains the detector. Streaming, no look-ahead.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TextIO

from jobline_analyzer.core import Config, Detector

PROBATION_FRACTION = 0.15
MAX_WARMUP = 750
# Generic series may carry slow structure the seasonal profiles have not learnt yet (a
# weekly pattern in its first weeks): the drift chart's spread on the series itself widens
# its null, up to 3x. The live latency detectors keep it off (it cost them latency steps).
# Its drift chart also waits for the weekly profile (a first weekend is a "drift" otherwise);
# the live latency detectors must catch slow leaks in a type's first week, so they do not.
SCORE = Config(drift_widen=3.0, drift_waits_for_week=True)


class InvalidSeries(ValueError):
    """The input is not a `timestamp,value` CSV."""


@dataclass(frozen=True, slots=True)
class ScoredPoint:
    """One output row."""

    timestamp: str
    value: float
    score: float
    is_anomaly: bool


def warmup_for(length: int) -> int:
    """Points that only train: 15% of the series, capped at 750."""
    return min(int(length * PROBATION_FRACTION), MAX_WARMUP)


def seconds(timestamp: str) -> float:
    """A timestamp as seconds: ISO date-times (naive ones read as UTC) or plain numbers."""
    try:
        t = datetime.fromisoformat(timestamp.strip())
    except ValueError:
        try:
            return float(timestamp)
        except ValueError:
            raise InvalidSeries(f"unreadable timestamp {timestamp!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def score_series(
    rows: Iterable[tuple[str, float]], length: int, config: Config | None = None
) -> Iterator[ScoredPoint]:
    """Score `(timestamp, value)` rows in order; `length` sizes the warm-up."""
    cfg = config or replace(SCORE, warmup=warmup_for(length))
    detector = Detector(cfg)
    for i, (timestamp, value) in enumerate(rows):
        point = detector.update(seconds(timestamp), value)
        score = point.score if i >= cfg.warmup else 0.0
        yield ScoredPoint(timestamp, value, score, point.flagged)


def read_series(stream: TextIO) -> list[tuple[str, float]]:
    """Read a `timestamp,value` CSV with a header; unparsable values become NaN.

    Every timestamp is checked here, so a bad file fails before any output is written.
    """
    reader = csv.DictReader(stream)
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "timestamp" not in fields or "value" not in fields:
        raise InvalidSeries("expected a CSV with 'timestamp' and 'value' columns")
    ts_key = (reader.fieldnames or [])[fields.index("timestamp")]
    value_key = (reader.fieldnames or [])[fields.index("value")]
    rows: list[tuple[str, float]] = []
    for row in reader:
        try:
            value = float(row[value_key])
        except (TypeError, ValueError):
            value = float("nan")
        seconds(row[ts_key])
        rows.append((row[ts_key], value))
    return rows


def write_scores(points: Iterable[ScoredPoint], stream: TextIO) -> None:
    """Write `timestamp,value,score,is_anomaly` rows with a header."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["timestamp", "value", "score", "is_anomaly"])
    for p in points:
        writer.writerow([p.timestamp, repr(p.value), f"{p.score:.6f}", int(p.is_anomaly)])
