"""Score the detectors on the corpus: precision, recall and delay per kind, tuning vs held out.

`python -m jobline_analyzer.evaluation [--split all|in-sample|held-out] [--seeds N] [--json]`.

- **jobs**: each job type's week goes through `SeriesDetectors.feed`, the wiring the live
  detection loop uses. An incident is *detected* when a finding of one of its primary kinds
  (`PRIMARY`) for its type ends within [start, end + GRACE]; its delay is that finding's end
  minus the start. A finding is *true* when an incident of its type that `EXPLAINS` its kind
  covers its end (a slow job backs its queue up: not a false alarm).
- **series**: each generic series goes through `score.score_series`, what `jobline-analyzer
  score` runs. A window is detected when a point inside it is flagged; a flag is true when it
  lies in a window; the delay is the first flag minus the anomaly's start, in points.
- **public**: labelled public series (see `data/README.md`), held out, scored like `series`.

The last line is the CPU time of `jobline-analyzer score` over a 365,000-point CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path

import numpy as np

from jobline_analyzer import corpus
from jobline_analyzer.findings import Finding, Kind
from jobline_analyzer.score import score_series
from jobline_analyzer.series import BucketInput, SeriesDetectors

GRACE = timedelta(minutes=30)
PRIMARY: dict[corpus.IncidentKind, frozenset[Kind]] = {
    "failure_burst": frozenset({"failure_rate_spike"}),
    "latency_step": frozenset({"runtime_drift"}),
    "slow_leak": frozenset({"runtime_drift"}),
    "stall": frozenset({"stall", "throughput_drop"}),
    "new_error_class": frozenset({"new_error_class"}),
}
# Real secondary effects: slower jobs back the queue up and finish fewer per minute; a stall
# leaves a backlog that waits; a new error class raises the failure rate.
_SLOW: frozenset[Kind] = frozenset({"queue_wait_drift", "throughput_drop"})
EXPLAINS: dict[corpus.IncidentKind, frozenset[Kind]] = {
    "failure_burst": PRIMARY["failure_burst"],
    "latency_step": PRIMARY["latency_step"] | _SLOW,
    "slow_leak": PRIMARY["slow_leak"] | _SLOW,
    "stall": PRIMARY["stall"] | {"queue_wait_drift"},
    "new_error_class": PRIMARY["new_error_class"] | {"failure_rate_spike"},
}
PUBLIC = ("kdd_tsad_135_internal_bleeding16.csv", "ecg_diff_count_3.csv")
TIMING_POINTS = 365_000


@dataclass(slots=True)
class Row:
    """One line of the table: a split, a family and a kind."""

    split: str
    family: str
    kind: str
    incidents: int = 0
    detected: int = 0
    true: int = 0
    false: int = 0
    points: int = 0
    delays: list[float] | None = None

    def out(self) -> dict[str, object]:
        """The row as printed."""
        d = self.delays or []
        return {
            **{k: v for k, v in asdict(self).items() if k != "delays"},
            "recall": round(self.detected / self.incidents, 3) if self.incidents else None,
            "precision": round(self.true / (self.true + self.false), 3)
            if self.true + self.false
            else None,
            "false_per_10k": round(1e4 * self.false / self.points, 2) if self.points else None,
            "median_delay": statistics.median(d) if d else None,
        }


def run_job_type(job_type: str, buckets: Iterable[BucketInput]) -> list[Finding]:
    """Feed one job type's buckets through the live wiring."""
    detectors = SeriesDetectors("acme", job_type)
    return [f for b in buckets for f in detectors.feed(b)]


def _covers(inc: corpus.Incident, f: Finding) -> bool:
    return inc.job_type == f.job_type and inc.start <= f.window_end <= inc.end + GRACE


def eval_jobs(split: str, seeds: Sequence[int]) -> list[Row]:
    """Rows per incident kind for the job-metric weeks of these seeds."""
    rows = {k: Row(split, "jobs", k, delays=[]) for k in corpus.INCIDENT_KINDS}
    quiet = Row(split, "jobs", "(no incident)")
    for seed in seeds:
        week = corpus.job_week(seed)
        for job_type, buckets in week.buckets.items():
            found = run_job_type(job_type, buckets)
            mine = [i for i in week.incidents if i.job_type == job_type]
            if not mine:
                quiet.points += len(buckets)
                quiet.false += len(found)
            for inc in mine:
                row = rows[inc.kind]
                row.incidents += 1
                hits = [f for f in found if f.kind in PRIMARY[inc.kind] and _covers(inc, f)]
                if hits:
                    row.detected += 1
                    first = min(f.window_end for f in hits)
                    assert row.delays is not None
                    row.delays.append((first - inc.start).total_seconds() / 60)
            for f in found:
                true = any(f.kind in EXPLAINS[i.kind] and _covers(i, f) for i in mine)
                for kind, primary in PRIMARY.items():
                    if f.kind in primary:
                        if true:
                            rows[kind].true += 1
                        else:
                            rows[kind].false += 1
            for row in rows.values():
                row.points += len(buckets)
    return [*rows.values(), quiet]


def score_labelled(s: corpus.Labelled, row: Row) -> None:
    """Add one scored series to a row."""
    rows = list(zip(s.timestamps, s.values, strict=True))
    flags = [i for i, p in enumerate(score_series(rows, len(rows))) if p.is_anomaly]
    row.points += len(rows)
    row.incidents += len(s.windows)
    inside = [any(a <= i < b for a, b in s.windows) for i in flags]
    row.true += sum(inside)
    row.false += len(flags) - sum(inside)
    for (a, b), (start, _) in zip(s.windows, s.anomalies, strict=True):
        hits = [i for i in flags if a <= i < b]
        if hits:
            row.detected += 1
            assert row.delays is not None
            row.delays.append(float(hits[0] - start))


def eval_series(split: str, seeds: Sequence[int]) -> list[Row]:
    """Rows per generic series kind for these seeds."""
    out = []
    for kind in corpus.SERIES_KINDS:
        row = Row(split, "series", kind, delays=[])
        for seed in seeds:
            score_labelled(corpus.generic_series(kind, seed), row)
        out.append(row)
    return out


def load_public(name: str) -> corpus.Labelled:
    """A labelled public series shipped in `data/`, with one-second timestamps."""
    text = resources.files("jobline_analyzer").joinpath("data", name).read_text()
    rows = list(csv.DictReader(text.splitlines()))
    labels = [int(r["is_anomaly"]) for r in rows]
    anomalies, start = [], None
    for i, v in enumerate([*labels, 0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            anomalies.append((start, i))
            start = None
    n = len(rows)
    stamps = corpus.timestamps(n, step=timedelta(seconds=1))
    return corpus.Labelled(
        name=name,
        kind=name.removesuffix(".csv"),
        timestamps=tuple(stamps),
        values=tuple(float(r["value"]) for r in rows),
        anomalies=tuple(anomalies),
        windows=tuple(corpus.windows_for(anomalies, n)),
    )


def eval_public() -> list[Row]:
    """Rows for the public series (held out)."""
    out = []
    for name in PUBLIC:
        row = Row("held-out", "public", name.removesuffix(".csv"), delays=[])
        score_labelled(load_public(name), row)
        out.append(row)
    return out


def score_cpu_seconds(n: int = TIMING_POINTS) -> float:
    """CPU seconds of `jobline-analyzer score` (read, score, write) over an n-point CSV."""
    from jobline_analyzer.__main__ import main

    rng = np.random.default_rng(7)
    values = 100 + 10 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 2, n)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        with src.open("w") as f:
            f.write("timestamp,value\n")
            for ts, v in zip(corpus.timestamps(n), values, strict=True):
                f.write(f"{ts},{v:.4f}\n")
        started = time.process_time()
        main(["score", str(src), "--output", str(dst)])
        return time.process_time() - started


def evaluate(split: str = "all", timing: bool = True, seeds: int = 3) -> dict[str, object]:
    """Every row of the table over ``seeds`` seeds per split, and the timing figure."""
    tuning, held_out = corpus.seeds(seeds)
    rows: list[Row] = []
    if split in ("all", "in-sample"):
        rows += eval_jobs("in-sample", tuning)
        rows += eval_series("in-sample", tuning)
    if split in ("all", "held-out"):
        rows += eval_jobs("held-out", held_out)
        rows += eval_series("held-out", held_out)
        rows += eval_public()
    result: dict[str, object] = {"rows": [r.out() for r in rows]}
    if timing:
        result["score_cpu_seconds_365k"] = round(score_cpu_seconds(), 2)
    return result


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def table(result: dict[str, object]) -> str:
    """The result as a fixed-width table."""
    cols = ("split", "family", "kind", "incidents", "detected", "recall", "true", "false",
            "precision", "false_per_10k", "median_delay")  # fmt: skip
    heads = ("split", "family", "kind", "n", "found", "recall", "true", "false", "prec",
             "fp/10k", "delay")  # fmt: skip
    rows = result["rows"]
    assert isinstance(rows, list)
    lines = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(heads)]
    out = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    out += ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) for line in lines]
    out.append("delay: minutes (jobs), points (series, public); fp/10k: false per 10,000 points")
    if "score_cpu_seconds_365k" in result:
        out.append(f"score CPU for {TIMING_POINTS:,} points: {result['score_cpu_seconds_365k']} s")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the evaluation table (or JSON)."""
    parser = argparse.ArgumentParser(prog="python -m jobline_analyzer.evaluation")
    parser.add_argument("--split", choices=("all", "in-sample", "held-out"), default="all")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-timing", action="store_true", help="skip the 365k-point timing")
    parser.add_argument(
        "--seeds", type=int, default=3, help="seeds per split (tuning 0.., held out 100..)"
    )
    args = parser.parse_args(argv)
    result = evaluate(args.split, timing=not args.no_timing, seeds=args.seeds)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
