"""The relay's retention purge against real PostgreSQL: what goes, what stays, and that the
tables stay bounded under a steady load of finished jobs."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import asyncpg

from jobline.core.retention import BatchLimits
from jobline.pg import purge
from jobline.pg.db import Database
from jobline_relay.retention import Retention
from jobline_relay.settings import Settings
from tests.support import insert_finished_jobs, new_tenant


async def counts(db: Database, tenant: str) -> dict[str, int]:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM jobs WHERE tenant_id = $1) AS jobs,"
            " (SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
            "  WHERE j.tenant_id = $1) AS attempts,"
            " (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1) AS keys",
            tenant,
        )
    assert row is not None
    return {"jobs": row["jobs"], "job_attempts": row["attempts"], "idempotency_keys": row["keys"]}


async def orphan_attempts(db: Database) -> int:
    async with db.connection() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM job_attempts a"
                " WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = a.job_id)"
            )
        )


def purged(table: str) -> float:
    return float(purge.PURGED.labels(table)._value.get())


def purger(size: int = 7) -> purge.Purger:
    limits = BatchLimits(initial=size, minimum=1, maximum=size, target_seconds=5)
    return purge.Purger(limits, round_budget_seconds=60, pause_seconds=0)


async def test_due_jobs_go_with_their_attempts_and_keys_the_rest_stays(db: Database) -> None:
    tenant = await new_tenant(db)
    await insert_finished_jobs(db, tenant, 20, keep=-1, attempts=3)  # due a second ago
    await insert_finished_jobs(db, tenant, 5, keep=3600, attempts=2)  # kept for an hour
    async with db.connection() as conn:  # a live job has no purge_after
        await conn.execute(
            "INSERT INTO jobs (tenant_id, type, queue, state, payload, max_attempts, backoff,"
            " timeout_seconds) VALUES ($1, 'echo', 'default', 'queued', '{}'::jsonb, 3,"
            " '{}'::jsonb, 30)",
            tenant,
        )
    before = {t: purged(t) for t in ("jobs", "job_attempts", "idempotency_keys", "workflows")}

    # Batches of 7: several rounds of the loop, the last one short.
    result = await purger(7).round(purge.relay_purges(db))

    assert result["jobs"] >= 20
    assert result["job_attempts"] >= 60
    assert result["idempotency_keys"] >= 20
    assert await counts(db, tenant) == {"jobs": 6, "job_attempts": 10, "idempotency_keys": 5}
    assert await orphan_attempts(db) == 0
    assert {t: purged(t) - before[t] for t in before} == result


async def test_a_job_someone_holds_is_skipped_and_purged_once_released(db: Database) -> None:
    tenant = await new_tenant(db)
    await insert_finished_jobs(db, tenant, 3, keep=-1)
    async with db.connection() as conn:
        ids: list[UUID] = [
            r["id"] for r in await conn.fetch("SELECT id FROM jobs WHERE tenant_id = $1", tenant)
        ]
    async with db.transaction() as holder:  # e.g. a redrive reading the job under its lock
        await holder.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", ids[0])
        await purger().round(purge.relay_purges(db))
        assert (await counts(db, tenant))["jobs"] == 1
        # Meanwhile the holder redrives it: no purge_after any more.
        await holder.execute(
            "UPDATE jobs SET state = 'queued', purge_after = NULL WHERE id = $1", ids[0]
        )
    await purger().round(purge.relay_purges(db))
    assert (await counts(db, tenant))["jobs"] == 1  # redriven: not finished, not purged


async def test_one_replica_purges_a_table_at_a_time(db: Database, database_url: str) -> None:
    tenant = await new_tenant(db)
    await insert_finished_jobs(db, tenant, 4, keep=-1)
    other = await asyncpg.connect(database_url)  # another relay, in the middle of a batch
    try:
        async with other.transaction():
            got = await other.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtextextended('jobline-purge:jobs', 0))"
            )
            assert got
            assert await purge.jobs_batch(db, 100) is None  # skipped, not blocked
            assert (await counts(db, tenant))["jobs"] == 4
            # The other table's lock is free: keys are purged meanwhile.
            assert (await purge.idempotency_keys_batch(db, 100) or {}).get(
                "idempotency_keys", 0
            ) >= 4
    finally:
        await other.close()
    assert ((await purge.jobs_batch(db, 100)) or {}).get("jobs", 0) >= 4
    assert (await counts(db, tenant))["jobs"] == 0


def settings(database_url: str, **changes: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "kafka_bootstrap": "127.0.0.1:9",  # the purge never talks to the broker
        "retention_interval_seconds": 0.2,
        "retention_batch_size": 100,
        "retention_pause_seconds": 0.0,
    }
    return Settings(**(values | changes))  # type: ignore[arg-type]


async def test_tables_stay_bounded_under_a_steady_load(db: Database, database_url: str) -> None:
    """200 finished jobs (2 attempts, 1 key each) per 0.1 s, kept 1 s: ~2,000 jobs are live at
    any time. Without the purge the tenant would hold all 12,000 by the end."""
    tenant = await new_tenant(db)
    keep, per_tick, tick, ticks = 1.0, 200, 0.1, 60
    retention = Retention(settings(database_url), db)
    retention.start()
    seen: list[dict[str, int]] = []
    try:
        for _ in range(ticks):
            started = time.monotonic()
            await insert_finished_jobs(db, tenant, per_tick, keep=keep)
            seen.append(await counts(db, tenant))
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))
    finally:
        await retention.stop()
    inserted = per_tick * ticks
    # Live rows: what finished in the last keep seconds, plus one purge interval, plus the
    # slack of a slow machine (ticks that overran): 2,000 + 400 + margin.
    bound = 3 * per_tick * keep / tick
    late = seen[ticks // 2 :]
    assert max(c["jobs"] for c in late) <= bound, seen
    assert max(c["idempotency_keys"] for c in late) <= bound, seen
    assert max(c["job_attempts"] for c in late) <= 2 * bound, seen
    # Flat, not slowly growing: the second half's peak is about the first half's.
    early_peak = max(c["jobs"] for c in seen[ticks // 4 : ticks // 2])
    assert max(c["jobs"] for c in late) <= early_peak * 1.5 + per_tick, seen
    assert seen[-1]["jobs"] < inserted / 3
