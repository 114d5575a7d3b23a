"""Worker benchmark, end to end with no-op (``echo``) jobs: relay and worker as processes.

- drain: 20,000 jobs inserted with ``jobstore.insert`` before anything runs; then the worker and
  the relay start, and we time until every job has succeeded.
- latency: jobs submitted at a paced rate (500/s, then 2,000/s, ~10 s each) straight through
  ``jobstore.insert`` (the gateway's own transaction, without HTTP); submit-to-start latency is
  ``started_at - created_at`` of each job (both stamped on this machine's clock). Percentiles
  are over every submitted job: a job not started within SETTLE_TIMEOUT after the last submit
  counts as slower than all started ones, and a percentile that falls among those is null
  (with ``not_started`` saying how many) rather than a figure of the started jobs only.
"""

from __future__ import annotations

import asyncio
import os
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
from tests.stack import ServiceProcess

BACKLOG = int(os.environ.get("JOBLINE_BENCH_WORKER_BACKLOG", "20000"))
RATES = (500, 2_000)
PACED_SECONDS = 10.0
CONCURRENCY = 64
INSERT_BATCH = 1_000
TICK_SECONDS = 0.02
SETTLE_TIMEOUT = 30.0


def run(env: BenchEnv) -> dict[str, Any]:
    """Drain throughput and paced submit-to-start latency; figures in a dict."""
    return asyncio.run(_run(env))


async def _run(env: BenchEnv) -> dict[str, Any]:
    engine = db.create_engine(env.db_settings, application_name="bench-worker")
    services: list[ServiceProcess] = []
    try:
        figures: dict[str, Any] = {"concurrency": CONCURRENCY}
        tenant = await _tenant(engine)
        started = time.monotonic()
        for offset in range(0, BACKLOG, INSERT_BATCH):
            await _insert(engine, tenant, min(INSERT_BATCH, BACKLOG - offset))
        figures["backlog_insert_seconds"] = round(time.monotonic() - started, 2)

        worker = _service(env, services, "worker", "--app", "jobline_worker.examples:worker",
                          "--queues", "default", "--concurrency", str(CONCURRENCY))  # fmt: skip
        await asyncio.to_thread(worker.start)
        t0 = time.monotonic()
        relay = _service(env, services, "relay")
        await asyncio.to_thread(relay.start)
        elapsed = await _until_succeeded(engine, tenant, BACKLOG, t0, timeout=180)
        figures["drain"] = {
            "jobs": BACKLOG,
            "seconds": round(elapsed, 2),
            "jobs_per_second": round(BACKLOG / elapsed, 1),
            "note": "from starting the relay (worker already consuming) to the last success",
        }
        for rate in RATES:
            figures[f"latency_at_{rate}_per_s"] = await _paced(engine, rate)
        return figures
    finally:
        for service in services:
            if service.alive:
                await asyncio.to_thread(service.terminate, 30)
        await engine.dispose()


def _service(
    env: BenchEnv, services: list[ServiceProcess], kind: str, *args: str
) -> ServiceProcess:
    log = env.work_dir / f"{kind}-{uuid4().hex[:6]}.log"
    service = ServiceProcess(kind=kind, env=env.service_env(), log_path=log, args=args)
    services.append(service)
    return service


async def _tenant(engine: AsyncEngine) -> str:
    name = f"bench-{uuid4().hex[:8]}"
    async with db.transaction(engine) as conn:
        await ensure_tenant(conn, name)
    return name


async def _insert(engine: AsyncEngine, tenant: str, count: int) -> None:
    now = datetime.now(UTC)
    jobs = [
        Job(
            id=uuid4(),
            tenant_id=tenant,
            type="echo",
            queue="default",
            state=JobState.QUEUED,
            payload={"n": i},
            created_at=now,
            run_at=now,
        )
        for i in range(count)
    ]
    async with db.transaction(engine) as conn:
        await jobstore.insert(conn, [submit(job, now) for job in jobs])


async def _until_succeeded(
    engine: AsyncEngine,
    tenant: str,
    total: int,
    t0: float,
    timeout: float,  # noqa: ASYNC109 - a plain deadline in seconds
) -> float:
    done = 0
    while time.monotonic() - t0 < timeout:
        async with db.transaction(engine) as conn:
            done = await conn.scalar(
                text("SELECT count(*) FROM jobs WHERE tenant_id = :t AND state = 'succeeded'"),
                {"t": tenant},
            )
        if done >= total:
            return time.monotonic() - t0
        await asyncio.sleep(0.25)
    raise TimeoutError(f"only {done} of {total} jobs succeeded within {timeout}s")


async def _paced(engine: AsyncEngine, rate: int) -> dict[str, Any]:
    tenant = await _tenant(engine)
    sent = 0
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < PACED_SECONDS:
        due = int(rate * elapsed) - sent
        if due > 0:
            await _insert(engine, tenant, due)
            sent += due
        await asyncio.sleep(TICK_SECONDS)
    achieved = sent / (time.monotonic() - t0)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    latencies: list[float] = []
    while time.monotonic() < deadline:
        async with db.transaction(engine) as conn:
            rows = await conn.execute(
                text(
                    "SELECT EXTRACT(EPOCH FROM (started_at - created_at)) AS wait FROM jobs"
                    " WHERE tenant_id = :t AND started_at IS NOT NULL"
                ),
                {"t": tenant},
            )
            latencies = sorted(float(r.wait) for r in rows)
        if len(latencies) >= sent:
            break
        await asyncio.sleep(0.5)
    return {
        "target_per_second": rate,
        "submitted": sent,
        "achieved_submit_per_second": round(achieved, 1),
        "started": len(latencies),
        "not_started": sent - len(latencies),
        "p50_ms": _ms(latencies, sent, 0.50),
        "p95_ms": _ms(latencies, sent, 0.95),
        "p99_ms": _ms(latencies, sent, 0.99),
        "max_ms": _ms(latencies, sent, 1.0),
    }


def _ms(sorted_values: list[float], total: int, q: float) -> float | None:
    """The q-quantile of ``total`` latencies of which ``sorted_values`` are known (the rest
    never started, so they are the slowest): None if it falls among those."""
    if not sorted_values or total <= 0:
        return None
    index = min(int(q * total), total - 1)
    if index >= len(sorted_values):
        return None
    return round(sorted_values[index] * 1000, 1)
