"""A tenant's own limits of a job type (jobline.pg.typelimits) as workers start its jobs.

The handler below declares no limit: a tenant's override alone governs its jobs, another
tenant's run unlimited, and a change takes effect on jobs already held.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from jobline.core.limits import Override
from jobline.pg import typelimits
from jobline_worker import Worker
from jobline_worker.context import JobContext
from tests.overlap import most_at_once
from tests.support import attempt_spans, insert_jobs, make_job, new_tenant, wait_for, wait_states

app = Worker()


@app.job("free-sleep")
async def free_sleep(ctx: JobContext, payload: dict[str, Any]) -> None:
    await asyncio.sleep(payload.get("seconds", 0.1))


async def set_override(db, tenant: str, override: Override) -> None:
    async with db.transaction() as conn:
        await typelimits.put(conn, tenant, "free-sleep", override)


async def test_a_tenants_own_limit_governs_its_jobs_only(db, relay, run_workers):
    limited, free = await new_tenant(db), await new_tenant(db)
    await set_override(db, limited, Override(concurrency=2))
    queue = f"o{uuid4().hex[:10]}"
    ids = await insert_jobs(
        db,
        [make_job(limited, "free-sleep", queue) for _ in range(16)]
        + [make_job(free, "free-sleep", queue) for _ in range(16)],
    )
    async with run_workers(app, queue, count=1, concurrency=8):
        await wait_states(db, ids, "succeeded", timeout=60)
    limited_peak = most_at_once(await attempt_spans(db, ids[:16]))
    free_peak = most_at_once(await attempt_spans(db, ids[16:]))
    print(f"tenant with its own limit 2: at most {limited_peak}; the other: {free_peak}")
    assert limited_peak == 2
    assert free_peak > 2


async def test_raising_a_limit_frees_the_jobs_held_under_the_old_one(db, relay, run_workers):
    tenant = await new_tenant(db)
    await set_override(db, tenant, Override(concurrency=1))
    queue = f"o{uuid4().hex[:10]}"
    ids = await insert_jobs(
        db, [make_job(tenant, "free-sleep", queue, {"seconds": 0.3}) for _ in range(24)]
    )
    # The worker's cache of overrides is not refreshed during the test: the claims of the
    # released jobs must read the raised limit themselves.
    async with run_workers(app, queue, count=1, concurrency=8, worker_limits_refresh_seconds=60):
        # One at a time, 0.3 s each: most are held after a second.
        await wait_for(lambda: _held(db, ids, 10), timeout=30)
        await set_override(db, tenant, Override(concurrency=4))
        await wait_states(db, ids, "succeeded", timeout=60)
    spans = await attempt_spans(db, ids)
    assert len(spans) == 24
    peak = most_at_once(spans)
    print(f"limit 1 raised to 4 with jobs held: at most {peak} at once afterwards")
    assert peak == 4


async def _held(db, ids, n: int) -> bool:
    async with db.connection() as conn:
        held = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND waiting_on IS NOT NULL"
            " AND state = 'scheduled'",
            ids,
        )
    return int(held) >= n
