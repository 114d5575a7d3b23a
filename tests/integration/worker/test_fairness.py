"""Tenant fairness (jobline.core.fairness): the real relay, a real worker, two tenants.

A tenant's flood is parked in PostgreSQL past its window, so another tenant's jobs wait
behind one window of it, not behind the whole flood; nothing is lost or run twice.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from jobline_relay.relay import Relay
from jobline_worker import Worker
from jobline_worker.context import JobContext
from tests.integration.worker.conftest import relay_settings
from tests.support import attempt_spans, insert_jobs, make_job, new_tenant, wait_for, wait_states

app = Worker()

WINDOW = 20
SLOTS = 4


@app.job("fair-sleep")
async def fair_sleep(ctx: JobContext, payload: dict[str, Any]) -> None:
    await asyncio.sleep(payload.get("seconds", 0.01))


async def parked_in(db, queue: str) -> int:
    async with db.connection() as conn:
        return int(
            await conn.fetchval("SELECT count(*) FROM outbox_parked WHERE queue = $1", queue)
        )


async def test_a_tenants_flood_does_not_starve_another_tenants_trickle(
    db, database_url, kafka_settings, run_workers
):
    settings = relay_settings(
        database_url,
        kafka_settings,
        relay_fair_window=WINDOW,
        relay_fair_interval_seconds=0.05,
    )
    relay = Relay(settings, db)
    relay.start()
    try:
        flood_tenant, trickle_tenant = await new_tenant(db), await new_tenant(db)
        queue = f"f{uuid4().hex[:10]}"
        flood = await insert_jobs(
            db, [make_job(flood_tenant, "fair-sleep", queue) for _ in range(600)]
        )
        # Before any worker runs, all but about a window of the flood is parked.
        await wait_for(lambda: _at_least(db, queue, 600 - 2 * WINDOW), timeout=30)
        # A relay that starts afresh knows nothing of them: it counts, and releases them.
        await relay.stop()
        relay = Relay(settings, db)
        relay.start()
        async with run_workers(app, queue, count=1, concurrency=SLOTS):
            await wait_for(lambda: _started(db, flood, 50), timeout=30)
            submitted = datetime.now(UTC)
            trickle = await insert_jobs(
                db, [make_job(trickle_tenant, "fair-sleep", queue) for _ in range(10)]
            )
            await wait_states(db, trickle, "succeeded", timeout=60)
            last_trickle_start = max(s for s, _ in await attempt_spans(db, trickle))
            flood_starts = [s for s, _ in await attempt_spans(db, flood)]
            ahead = sum(1 for s in flood_starts if submitted <= s <= last_trickle_start)
            print(
                f"flood of 600 (window {WINDOW}): {ahead} of its jobs started between the "
                f"trickle's submission and its last start; "
                f"{600 - len(flood_starts)} were still to start then"
            )
            # Behind one window of the flood (plus what was in the worker's hands and the
            # estimate's slack), not behind the hundreds still to come.
            assert ahead <= 3 * WINDOW + SLOTS
            assert 600 - len(flood_starts) > 100  # the flood was far from done
            await wait_states(db, flood, "succeeded", timeout=120)
        assert len(await attempt_spans(db, flood)) == 600  # each ran once
        assert await parked_in(db, queue) == 0
    finally:
        await relay.stop()


async def _at_least(db, queue: str, n: int) -> bool:
    return await parked_in(db, queue) >= n


async def _started(db, ids, n: int) -> bool:
    async with db.connection() as conn:
        started = await conn.fetchval(
            "SELECT count(*) FROM job_attempts WHERE job_id = ANY($1::uuid[])", ids
        )
    return int(started) >= n
