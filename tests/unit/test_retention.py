"""Retention's pure rules (batch sizing, when a round stops, cutoffs), the purge loop's
control flow over fake batches, and the retention settings' validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobline.core.errors import ConfigError
from jobline.core.retention import BatchLimits, cutoff, next_batch_size, round_done
from jobline.pg.purge import Counts, Purge, Purger
from jobline.settings import load
from jobline_analyzer.settings import Settings as AnalyzerSettings
from jobline_relay.settings import Settings as RelaySettings

LIMITS = BatchLimits(initial=100, minimum=10, maximum=400, target_seconds=0.2)


@pytest.mark.parametrize(
    ("size", "deleted", "elapsed", "expected"),
    [
        (100, 100, 0.05, 200),  # full and quick: double
        (400, 400, 0.01, 400),  # capped at the maximum
        (100, 100, 0.15, 100),  # full, near the target: keep
        (100, 40, 0.01, 100),  # short batch: nothing to learn about size
        (100, 100, 0.5, 50),  # overran the target: halve
        (12, 12, 3.0, 10),  # never under the minimum
    ],
)
def test_the_batch_size_adapts_to_the_time_a_batch_takes(
    size: int, deleted: int, elapsed: float, expected: int
) -> None:
    assert next_batch_size(size, deleted, elapsed, LIMITS) == expected


def test_a_round_stops_when_nothing_more_is_due_or_its_budget_is_spent() -> None:
    assert round_done(deleted=3, size=100, spent=0.1, budget=10)
    assert not round_done(deleted=100, size=100, spent=0.1, budget=10)
    assert round_done(deleted=100, size=100, spent=10.0, budget=10)


def test_cutoff_is_now_minus_the_retention() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert cutoff(now, timedelta(days=30)) == datetime(2026, 10, 30, 12, tzinfo=UTC)
    with pytest.raises(ConfigError):
        cutoff(now, timedelta(0))


@pytest.mark.parametrize(
    ("initial", "minimum", "maximum", "target"),
    [(5, 10, 100, 1.0), (200, 10, 100, 1.0), (50, 0, 100, 1.0), (50, 10, 100, 0.0)],
)
def test_inconsistent_limits_are_refused(
    initial: int, minimum: int, maximum: int, target: float
) -> None:
    with pytest.raises(ConfigError):
        BatchLimits(initial=initial, minimum=minimum, maximum=maximum, target_seconds=target)


class FakeTable:
    """``due`` rows; each batch deletes up to n of them and takes ``seconds`` on the clock."""

    def __init__(self, due: int, clock: list[float], seconds: float = 0.01) -> None:
        self.due, self.clock, self.seconds = due, clock, seconds
        self.sizes: list[int] = []

    async def batch(self, limit: int) -> Counts | None:
        self.sizes.append(limit)
        self.clock[0] += self.seconds
        deleted = min(limit, self.due)
        self.due -= deleted
        return {"t": deleted, "t_children": 2 * deleted}


def make_purger(clock: list[float], budget: float = 60.0) -> Purger:
    return Purger(LIMITS, round_budget_seconds=budget, pause_seconds=0, clock=lambda: clock[0])


async def test_a_round_drains_a_table_growing_its_batches_and_counts_every_table() -> None:
    clock = [0.0]
    table = FakeTable(1000, clock)
    purger = make_purger(clock)
    assert await purger.round([Purge("t", table.batch)]) == {"t": 1000, "t_children": 2000}
    assert table.sizes == [100, 200, 400, 400]  # the last one short: drained
    assert purger.sizes["t"] == 400  # remembered for the next round


async def test_slow_batches_shrink_and_the_budget_ends_the_round() -> None:
    clock = [0.0]
    table = FakeTable(10_000, clock, seconds=1.0)
    purger = make_purger(clock, budget=3.5)
    assert (await purger.round([Purge("t", table.batch)]))["t"] == 100 + 50 + 25 + 12
    assert table.sizes == [100, 50, 25, 12]
    assert table.due > 0  # the next round goes on


async def test_a_table_locked_by_another_replica_is_skipped() -> None:
    clock = [0.0]
    other = FakeTable(5, clock)

    async def locked(_: int) -> Counts | None:
        return None

    totals = await make_purger(clock).round([Purge("busy", locked), Purge("t", other.batch)])
    assert totals == {"t": 5, "t_children": 10}


def relay(**changes: object) -> RelaySettings:
    return load(
        RelaySettings, database_url="postgresql://x@h/db", kafka_bootstrap="h:9092", **changes
    )


def test_relay_retention_defaults_and_bounds() -> None:
    settings = relay()
    assert settings.retention_enabled
    assert settings.retention_limits == BatchLimits(500, 10, 5000, 0.25)
    with pytest.raises(ConfigError, match="RETENTION_BATCH_SIZE"):
        relay(retention_batch_size=20_000)
    with pytest.raises(ConfigError, match="between retention_batch_min"):
        relay(retention_batch_size=5, retention_batch_min=10)


def analyzer(**changes: object) -> AnalyzerSettings:
    return load(
        AnalyzerSettings, database_url="postgresql://x@h/db", kafka_bootstrap="h:9092", **changes
    )


def test_analyzer_retention_must_cover_what_the_analyzer_reads() -> None:
    assert analyzer().analyzer_job_retention_days >= analyzer().analyzer_history_days
    with pytest.raises(ConfigError, match="analyzer_job_retention_days"):
        analyzer(analyzer_job_retention_days=3)
    with pytest.raises(ConfigError, match="analyzer_rollup_retention_days"):
        analyzer(analyzer_rollup_retention_days=0.5)
