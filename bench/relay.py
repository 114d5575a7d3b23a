"""Relay publish throughput: a 100,000-row outbox backlog drained by one relay process.

50,000 jobs are submitted first (as the gateway does: ``jobstore.insert`` of ``submit``
results, 2,000 per transaction), which writes 100,000 outbox rows (a work message and a
"queued" CloudEvent each). Then one relay process starts; we time from its first publish
(the backlog starts shrinking) until the outbox is empty, and check every job id on the work
topic with a consumer afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.env import BenchEnv
from jobline import db, jobstore
from jobline.keystore import ensure_tenant
from jobline.states import Job, JobState, submit
from tests.integration.relay.helpers import TopicReader, work_topic
from tests.stack import ServiceProcess

JOBS = 50_000
INSERT_BATCH = 2_000
QUEUE = "bench"
TIMEOUT = 90.0


def run(env: BenchEnv) -> dict[str, Any]:
    return asyncio.run(_run(env))


async def _run(env: BenchEnv) -> dict[str, Any]:
    engine = db.create_engine(env.db_settings)
    try:
        started = time.monotonic()
        ids = await _insert_backlog(engine)
        insert_seconds = time.monotonic() - started
        rows = await _outbox_rows(engine)
        relay = ServiceProcess("relay", env.service_env(), env.work_dir / "bench-relay.log")
        relay.start(wait=False)
        try:
            launched = time.monotonic()
            # Rows go oldest first: the smallest id changes with the first committed batch.
            first_id = await _min_id(engine)
            first_publish = await _until(engine, lambda i: i != first_id, launched)
            drained = await _until(engine, lambda i: i is None, launched)
            seen, duplicates = await _check_topic(env, ids)
            exit_code = relay.terminate()
        finally:
            relay.kill()
    finally:
        await engine.dispose()
    publish_seconds = drained - first_publish
    return {
        "backlog_rows": rows,
        "jobs": len(ids),
        "insert_seconds": round(insert_seconds, 2),
        "startup_seconds": round(first_publish - launched, 2),
        "publish_seconds": round(publish_seconds, 2),
        "rows_per_second": round(rows / publish_seconds),
        "rows_per_second_incl_startup": round(rows / (drained - launched)),
        "work_ids_on_topic": seen,
        "missing": len(ids) - seen,
        "duplicates": duplicates,
        "batch_size": 500,
        "relay_exit_code": exit_code,
    }


async def _insert_backlog(engine: AsyncEngine) -> list[Any]:
    tenant = f"bench-{uuid4().hex[:8]}"
    async with db.transaction(engine) as conn:
        await ensure_tenant(conn, tenant)
    ids = []
    for start in range(0, JOBS, INSERT_BATCH):
        now = datetime.now(UTC)
        submitted = [
            submit(
                Job(
                    id=uuid4(),
                    tenant_id=tenant,
                    type="noop",
                    queue=QUEUE,
                    state=JobState.QUEUED,
                    payload={"i": start + i},
                    created_at=now,
                    run_at=now,
                ),
                now,
            )
            for i in range(min(INSERT_BATCH, JOBS - start))
        ]
        async with db.transaction(engine) as conn:
            await jobstore.insert(conn, submitted)
        ids += [t.job.id for t in submitted]
    return ids


async def _min_id(engine: AsyncEngine) -> int | None:
    async with engine.connect() as conn:
        value = await conn.scalar(text("SELECT min(id) FROM outbox"))
    return int(value) if value is not None else None


async def _outbox_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM outbox")) or 0)


async def _until(engine: AsyncEngine, done: Any, since: float) -> float:
    # Polls cheaply (an index probe, not a count of the backlog) so the measuring does not
    # compete with the relay for the machine's cores.
    query = text("SELECT min(id) FROM outbox")
    while time.monotonic() - since < TIMEOUT:
        async with engine.connect() as conn:
            if done(await conn.scalar(query)):
                return time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"outbox not drained within {TIMEOUT}s")


async def _check_topic(env: BenchEnv, ids: list[Any]) -> tuple[int, int]:
    async with TopicReader(env.kafka_settings, work_topic(env.kafka_settings, QUEUE)) as reader:
        with contextlib.suppress(AssertionError):  # reported as missing, not raised
            await reader.wait_for(ids, timeout=60)
        await reader.poll()
    return reader.seen(ids), reader.duplicates(ids)
