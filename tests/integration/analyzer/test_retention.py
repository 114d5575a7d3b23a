"""The analyzer purges its own rows after their retention, and keeps what it still needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.pg import engine as db
from jobline_analyzer.retention import AnalyzerRetention
from jobline_analyzer.settings import Settings

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)  # beyond every default retention
RECENT = NOW - timedelta(hours=1)


def settings(database_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "kafka_bootstrap": "127.0.0.1:9"}
    return Settings(**(values | changes))


async def seed(engine: AsyncEngine, tenant: str, at: datetime, *, published: bool) -> None:
    """One row of every analyzer table for series (tenant, "t"), stamped ``at``."""
    job = uuid4()
    params = {"tenant": tenant, "at": at, "job": job, "ev": f"{job}:1"}
    async with db.transaction(engine) as conn:
        for sql in (
            "INSERT INTO analyzer_seen_events (event_id, seen_at) VALUES (:ev, :at)",
            "INSERT INTO analyzer_rollups (tenant_id, job_type, bucket) VALUES (:tenant, 't', :at)",
            "INSERT INTO analyzer_error_rollups (tenant_id, job_type, bucket, fingerprint,"
            " error_class, count) VALUES (:tenant, 't', :at, 'f', 'E', 1)",
            "INSERT INTO analyzer_jobs (job_id, tenant_id, job_type, state, sequence,"
            " max_attempts, updated_at) VALUES (:job, :tenant, 't', 'succeeded', 3, 3, :at)",
            "INSERT INTO analyzer_attempts (job_id, attempt, outcome, started_at, finished_at)"
            " VALUES (:job, 1, 'failed', :at, :at), (:job, 2, 'succeeded', :at, :at)",
        ):
            await conn.execute(text(sql), params)
        await conn.execute(
            text(
                "INSERT INTO analyzer_findings (tenant_id, job_type, kind, severity, window_start,"
                " window_end, baseline, observed, score, explanation, created_at, published_at)"
                " VALUES (:tenant, 't', 'failure_rate_spike', 'warning', :at, :at, 0, 1, 9, 'x',"
                " :at, CASE WHEN :published THEN CAST(:at AS timestamptz) END)"
            ),
            params | {"published": published},
        )


async def rows(engine: AsyncEngine, tenant: str) -> dict[str, int]:
    by_tenant = {
        t: f"SELECT count(*) FROM {t} WHERE tenant_id = :tenant"
        for t in (
            "analyzer_rollups",
            "analyzer_error_rollups",
            "analyzer_jobs",
            "analyzer_findings",
            "analyzer_detector_state",
        )
    }
    by_tenant["analyzer_attempts"] = (
        "SELECT count(*) FROM analyzer_attempts a JOIN analyzer_jobs j USING (job_id)"
        " WHERE j.tenant_id = :tenant"
    )
    async with db.transaction(engine) as conn:
        return {
            t: int(await conn.scalar(text(sql), {"tenant": tenant})) for t, sql in by_tenant.items()
        }


async def seen_count(engine: AsyncEngine, before: datetime) -> int:
    async with db.transaction(engine) as conn:
        value = await conn.scalar(
            text("SELECT count(*) FROM analyzer_seen_events WHERE seen_at < :before"),
            {"before": before},
        )
    return int(value)


async def add_state(engine: AsyncEngine, tenant: str) -> None:
    async with db.transaction(engine) as conn:
        await conn.execute(
            text(
                "INSERT INTO analyzer_detector_state (tenant_id, job_type, last_bucket, state)"
                " VALUES (:tenant, 't', now(), '{}'::jsonb)"
            ),
            {"tenant": tenant},
        )


async def test_old_rows_go_recent_and_unpublished_ones_stay(
    engine: AsyncEngine, database_url: str
) -> None:
    gone, kept = (f"a-{uuid4().hex[:8]}" for _ in range(2))
    await seed(engine, gone, OLD, published=True)
    await seed(engine, kept, RECENT, published=True)
    await seed(engine, kept, OLD, published=False)  # old but never published: the publisher owes it
    await add_state(engine, gone)  # a series whose last rollup is long gone
    await add_state(engine, kept)  # a series with a recent rollup

    purged = await AnalyzerRetention(settings(database_url), engine).round()

    assert await rows(engine, gone) == dict.fromkeys(
        (
            "analyzer_rollups",
            "analyzer_error_rollups",
            "analyzer_jobs",
            "analyzer_findings",
            "analyzer_detector_state",
            "analyzer_attempts",
        ),
        0,
    )
    assert await rows(engine, kept) == {
        "analyzer_rollups": 1,
        "analyzer_error_rollups": 1,
        "analyzer_jobs": 1,
        "analyzer_findings": 2,  # the recent one and the unpublished old one
        "analyzer_detector_state": 1,
        "analyzer_attempts": 2,
    }
    assert await seen_count(engine, NOW - timedelta(days=30)) == 0
    for table in ("analyzer_rollups", "analyzer_jobs", "analyzer_detector_state"):
        assert purged[table] >= 1
    assert purged["analyzer_attempts"] >= 2
    assert purged["analyzer_seen_events"] >= 1
    assert purged["analyzer_findings"] >= 1


async def test_each_table_has_its_own_retention(engine: AsyncEngine, database_url: str) -> None:
    tenant = f"a-{uuid4().hex[:8]}"
    await seed(engine, tenant, NOW - timedelta(days=20), published=True)
    # Jobs are kept 14 days by default, rollups 30 and findings 90.
    await AnalyzerRetention(settings(database_url), engine).round()
    left = await rows(engine, tenant)
    assert (left["analyzer_jobs"], left["analyzer_attempts"]) == (0, 0)
    assert (left["analyzer_rollups"], left["analyzer_findings"]) == (1, 1)
    # A shorter rollup retention takes them too.
    short = settings(database_url, analyzer_rollup_retention_days=10)
    await AnalyzerRetention(short, engine).round()
    assert (await rows(engine, tenant))["analyzer_rollups"] == 0
