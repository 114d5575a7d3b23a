"""Priorities end to end: lanes published by the real relay, taken highest first by a worker.

The issue's figure (50,000 queued, 64 busy slots) is `make bench-flow`'s; this test runs the
same situation smaller, and asserts the order rather than a time: the priority-9 job overtakes
the backlog, starting after at most a few slots' worth of the jobs queued before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import pytest

from jobline_worker import Worker
from jobline_worker.context import JobContext
from jobline_worker.runtime import Runtime
from tests.integration.worker.conftest import worker_settings
from tests.support import insert_jobs, job_of, make_job, new_tenant, wait_for, wait_states

app = Worker()


@app.job("nap")
async def nap(ctx: JobContext, payload: dict[str, Any]) -> None:
    await asyncio.sleep(payload.get("seconds", 0.05))


@pytest.fixture
def run_worker(database_url, kafka_settings):
    @asynccontextmanager
    async def start(queue: str, concurrency: int) -> AsyncIterator[Runtime]:
        # As the embedded stack runs it: the embedded broker answers a waiting fetch only when
        # its wait is over, so a message for an idle lane waits up to that long to be seen.
        settings = worker_settings(database_url, kafka_settings, worker_fetch_max_wait_ms=5)
        runtime = Runtime(
            settings, app, [queue], concurrency, consumer_options=settings.consumer_options()
        )
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop()

    return start


async def started_count(db, queue: str) -> int:
    async with db.connection() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE queue = $1 AND started_at IS NOT NULL", queue
            )
        )


async def test_a_priority_9_job_overtakes_a_backlog_with_every_slot_busy(db, relay, run_worker):
    tenant = await new_tenant(db)
    queue = f"p{uuid4().hex[:10]}"
    slots = 8
    backlog = await insert_jobs(
        db, [make_job(tenant, "nap", queue, {"seconds": 0.05}) for _ in range(2_000)]
    )
    async with run_worker(queue, slots):
        # Every slot busy, and the backlog on the topic (the relay has published it all).
        await wait_for(lambda: started_count(db, queue), timeout=30)

        async def published() -> bool:
            async with db.connection() as conn:
                left = await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE job_id = ANY($1::uuid[])", backlog
                )
            return bool(left == 0)

        await wait_for(published, timeout=20)
        (urgent,) = await insert_jobs(db, [make_job(tenant, "nap", queue, {}, priority=9)])
        await wait_states(db, [urgent], "succeeded", timeout=30)
        job = await job_of(db, urgent)
        async with db.connection() as conn:
            overtaken_by = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[])"
                " AND (started_at IS NULL OR started_at > $2)",
                backlog,
                job.started_at,
            )
            started_between = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[])"
                " AND started_at > $2 AND started_at < $3",
                backlog,
                job.created_at,
                job.started_at,
            )
    assert job.started_at is not None
    wait = (job.started_at - job.created_at).total_seconds()
    print(f"priority 9 started {wait * 1000:.0f} ms after submission, ahead of {overtaken_by}")
    # Most of the backlog was still waiting when the urgent job started...
    assert overtaken_by > 1_000
    # ...and it waited only for slots already taken (plus a fetch in flight), not its turn.
    assert started_between <= 2 * slots
