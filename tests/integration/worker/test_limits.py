"""Concurrency and rate limits across worker processes: two runtimes, the real relay.

The figures come from the attempts' own timestamps (what an operator would check), never
from the test's clock.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from jobline_worker import Worker
from jobline_worker.context import JobContext
from tests.overlap import most_at_once, most_in_window
from tests.support import (
    attempt_spans,
    insert_jobs,
    job_of,
    make_job,
    new_tenant,
    wait_states,
)

app = Worker()


@app.job("per-customer", concurrency=5, concurrency_key="customer_id")
async def per_customer(ctx: JobContext, payload: dict[str, Any]) -> None:
    await asyncio.sleep(payload.get("seconds", 0.1))


@app.job("ten-per-second", rate_limit="10/s")
async def ten_per_second(ctx: JobContext, payload: dict[str, Any]) -> None:
    return None


async def test_a_concurrency_limit_per_payload_key_holds_across_two_workers(db, relay, run_workers):
    tenant = await new_tenant(db)
    queue = f"l{uuid4().hex[:10]}"
    limited = [
        make_job(tenant, "per-customer", queue, {"customer_id": "c1", "seconds": 0.1})
        for _ in range(60)
    ]
    # Another customer's jobs are not held back by the first one's limit.
    other = [
        make_job(tenant, "per-customer", queue, {"customer_id": "c2", "seconds": 0.1})
        for _ in range(5)
    ]
    ids = await insert_jobs(db, limited + other)
    async with run_workers(app, queue, count=2, concurrency=8):
        await wait_states(db, ids, "succeeded", timeout=60)
    spans = await attempt_spans(db, ids[:60])
    assert len(spans) == 60
    peak = most_at_once(spans)
    print(f"60 jobs of one customer, limit 5, two workers of 8 slots: at most {peak} at once")
    assert peak <= 5
    # The limit was reached (so the check above saw contention, not a trickle)...
    assert peak == 5
    # ...and jobs over it waited in PostgreSQL, not in a worker's slot.
    async with db.connection() as conn:
        held = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND sequence > 3", ids[:60]
        )
    assert held > 0
    c2 = await attempt_spans(db, ids[60:])
    assert len(c2) == 5


async def test_a_rate_limit_never_exceeds_its_window_and_loses_nothing(db, relay, run_workers):
    tenant = await new_tenant(db)
    queue = f"r{uuid4().hex[:10]}"
    ids = await insert_jobs(db, [make_job(tenant, "ten-per-second", queue) for _ in range(40)])
    async with run_workers(app, queue, count=2, concurrency=8):
        await wait_states(db, ids, "succeeded", timeout=60)
    starts = [s for s, _ in await attempt_spans(db, ids)]
    assert len(starts) == 40
    peak = most_in_window(starts, 1.0)
    spread = (max(starts) - min(starts)).total_seconds()
    print(f"40 jobs at 10/s: at most {peak} starts in any 1 s window, spread over {spread:.2f} s")
    assert peak <= 10
    assert spread >= 3.0  # 40 starts at 10 per second cannot take less than 3 s
    job = await job_of(db, ids[-1])
    assert job.waiting_on is None  # cleared once it started
