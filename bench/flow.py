"""Flow-control workloads (issue "Flow control"): ``python -m bench --only p``.

- Limits: 300 jobs of a type limited to 10 starts per second, and 200 jobs of one customer
  limited to 5 running at once, on one worker with 64 slots; from the attempts' timestamps,
  the most starts in any one-second window and the most running at once.

- P priority: one worker with 64 slots, all busy with a backlog of BACKLOG priority-0 jobs
  (each holds its slot for SLEEP_SECONDS) already on the work topic; then URGENT priority-9
  jobs, one every half second; each one's wait = handler start - the moment before its submit
  call. The backlog is left unfinished (the bench's servers go with it).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Any

from bench import cpu
from bench.http import Connection
from bench.servers import SLEEP_TYPE, Bench
from tests.overlap import most_at_once, most_in_window

BACKLOG = int(os.environ.get("JOBLINE_BENCH_BACKLOG", "50000"))
SLEEP_SECONDS = 0.1
URGENT = 10
SLOTS = "64"


async def priority(run: Bench, queue: str = "p") -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {run.api_key}"}
    async with Connection(run.services["gateway"].url, auth) as conn:
        for start in range(0, BACKLOG, 1_000):
            batch: dict[str, Any] = {
                "jobs": [
                    {"type": SLEEP_TYPE, "queue": queue, "payload": {"s": SLEEP_SECONDS}}
                    for _ in range(min(1_000, BACKLOG - start))
                ]
            }
            status, text = await conn.send(conn.post("/v1/jobs/batch", batch))
            if status != 201:
                raise RuntimeError(f"backlog refused: {status} {text[:300]!r}")
    await run.wait_outbox_empty()
    args = ("--app", "bench.handlers:worker", "--concurrency", SLOTS, "--queues", queue)
    await asyncio.to_thread(run.start, "worker", "worker", *args)
    await _until_busy(run, queue, int(SLOTS))
    # A fresh connection: the gateway closed the first one while the worker started.
    async with Connection(run.services["gateway"].url, auth) as conn:
        before = cpu.sample(run.pids())
        waits: list[float] = []
        for _ in range(URGENT):
            body: dict[str, Any] = {
                "type": SLEEP_TYPE,
                "queue": queue,
                "priority": 9,
                "payload": {"s": 0},
            }
            sent = time.time()
            status, text = await conn.send(conn.post("/v1/jobs", body))
            if status != 201:
                raise RuntimeError(f"urgent job refused: {status} {text[:300]!r}")
            job_id = _job_id(text)
            waits.append(await _started(run, job_id) - sent)
            await asyncio.sleep(0.5)
        used = cpu.sample(run.pids()).minus(before)
    left = await run.fetch(
        "SELECT count(*) AS n FROM jobs WHERE queue = $1 AND priority = 0 AND started_at IS NULL",
        queue,
    )
    await asyncio.to_thread(run.stop, "worker")
    ms = sorted(w * 1000 for w in waits)
    return {
        "backlog": BACKLOG,
        "busy_slots": int(SLOTS),
        "urgent_jobs": URGENT,
        "urgent_start_ms": {
            "p50": round(statistics.median(ms), 1),
            "max": round(ms[-1], 1),
            "each": [round(m, 1) for m in ms],
        },
        "backlog_not_started_at_end": int(left[0]["n"]),
        "cpu_seconds_during": {k: round(v, 2) for k, v in used.items()},
    }


def _job_id(text: bytes) -> str:
    return str(json.loads(text)["id"])


async def _until_busy(run: Bench, queue: str, slots: int) -> None:
    for _ in range(600):
        rows = await run.fetch(
            "SELECT count(*) AS n FROM jobs WHERE queue = $1 AND state = 'running'", queue
        )
        if rows[0]["n"] >= slots:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the worker never filled its slots")


async def _started(run: Bench, job_id: str) -> float:
    for _ in range(3000):
        rows = await run.fetch(
            "SELECT (result->>'t')::float8 AS t FROM jobs WHERE id = $1::uuid"
            " AND state = 'succeeded'",
            job_id,
        )
        if rows:
            return float(rows[0]["t"])
        await asyncio.sleep(0.01)
    raise RuntimeError(f"urgent job {job_id} did not run within 30 s")


async def limits(run: Bench, queue: str = "l") -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {run.api_key}"}
    async with Connection(run.services["gateway"].url, auth) as conn:
        rated = [{"type": "bench.rated", "queue": queue, "payload": {}} for _ in range(300)]
        keyed = [
            {"type": "bench.keyed", "queue": queue, "payload": {"customer_id": "c1", "s": 0.05}}
            for _ in range(200)
        ]
        for jobs in (rated, keyed):
            status, text = await conn.send(conn.post("/v1/jobs/batch", {"jobs": jobs}))
            if status != 201:
                raise RuntimeError(f"refused: {status} {text[:300]!r}")
    args = ("--app", "bench.handlers:worker", "--concurrency", SLOTS, "--queues", queue)
    started = time.monotonic()
    await asyncio.to_thread(run.start, "worker", "worker", *args)
    for _ in range(1200):
        rows = await run.fetch(
            "SELECT count(*) AS n FROM jobs WHERE type IN ('bench.rated', 'bench.keyed')"
            " AND state = 'succeeded'"
        )
        if rows[0]["n"] >= 500:
            break
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    spans = await run.fetch(
        "SELECT j.type, a.started_at, a.finished_at FROM job_attempts a JOIN jobs j"
        " ON j.id = a.job_id WHERE j.type IN ('bench.rated', 'bench.keyed')"
    )
    await asyncio.to_thread(run.stop, "worker")
    rated_starts = sorted(r["started_at"] for r in spans if r["type"] == "bench.rated")
    keyed_spans = [(r["started_at"], r["finished_at"]) for r in spans if r["type"] == "bench.keyed"]
    return {
        "rate_10_per_s": {
            "jobs": len(rated_starts),
            "most_starts_in_any_1s_window": most_in_window(rated_starts, 1.0),
            "first_to_last_start_s": round((rated_starts[-1] - rated_starts[0]).total_seconds(), 2),
        },
        "concurrency_5_per_customer": {
            "jobs": len(keyed_spans),
            "most_running_at_once": most_at_once(keyed_spans),
        },
        "wall_seconds": round(elapsed, 1),
    }
