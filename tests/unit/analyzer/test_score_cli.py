"""The `score` command on a small generated NAB-style CSV."""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from jobline_analyzer.__main__ import main


def write_series(path: Path, n: int = 1000, spike_at: int = 700) -> None:
    rng = np.random.default_rng(0)
    t0 = datetime(2014, 4, 1)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        for i in range(n):
            v = 50 + 10 * math.sin(2 * math.pi * i / 288) + rng.normal(0, 1)
            if i == spike_at:
                v += 40
            w.writerow([(t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S"), v])


def test_score_writes_nab_columns_and_flags_the_spike(tmp_path: Path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    assert main(["score", str(src), "--output", str(out)]) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["timestamp", "value", "score", "is_anomaly"]
    assert len(rows) == 1000
    assert rows[0]["timestamp"] == "2014-04-01 00:00:00"
    scores = [float(r["score"]) for r in rows]
    flags = [int(r["is_anomaly"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert not any(flags[:150])  # probationary 15%
    assert flags[700] == 1
    assert scores[700] == max(scores)
    assert sum(flags) <= 3


def test_serve_without_configuration_fails_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBLINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("JOBLINE_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["serve"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "JOBLINE_DATABASE_URL" in err
    assert "JOBLINE_KAFKA_BOOTSTRAP" in err


def test_score_rejects_a_bad_file_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,reading\n2014-04-01 00:00:00,1\n")
    assert main(["score", str(bad)]) == 2
    assert "'timestamp' and 'value'" in capsys.readouterr().err
    odd = tmp_path / "odd.csv"
    odd.write_text("timestamp,value\nyesterday,1\n")
    assert main(["score", str(odd)]) == 2
    assert "unreadable timestamp 'yesterday'" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "missing.csv")]) == 2
