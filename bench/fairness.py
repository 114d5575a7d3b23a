"""Tenant fairness (issue "Flow control"): ``python -m bench --only f``.

One worker with 64 slots runs no-op jobs on queue ``f``. Tenant B submits TRICKLE jobs one
at a time, alone: each one's start latency (handler start - the moment before its submit
call). Then tenant A submits FLOOD jobs in batches of 1,000 and, as soon as A's last batch is
accepted, B submits its TRICKLE again: the same latencies, behind A's flood. Both once with
the relay's fairness window off (``JOBLINE_RELAY_FAIR_WINDOW=0``: everything published at
once, as before fairness) and once with the default window.
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
from bench.servers import JOB_TYPE, Bench, tenant_key
from bench.workloads import WORKER_ARGS, _started

FLOOD = int(os.environ.get("JOBLINE_BENCH_FLOOD", "50000"))
TRICKLE = 100
QUEUE = "f"


async def fairness(run: Bench) -> dict[str, Any]:
    b_key = await tenant_key(run.database_url, "bench-b")
    figures: dict[str, Any] = {"flood_jobs": FLOOD, "trickle_jobs": TRICKLE}
    for label, env in (("window_off", {"JOBLINE_RELAY_FAIR_WINDOW": "0"}), ("window_on", {})):
        await asyncio.to_thread(run.stop, "relay")
        await asyncio.to_thread(run.start, "relay", "relay", extra=env)
        await asyncio.to_thread(run.start, "worker", "worker", *WORKER_ARGS, "--queues", QUEUE)
        alone = await _trickle(run, b_key)
        before = cpu.sample(run.pids())
        flood_started = time.time()
        await _flood(run)
        behind = await _trickle(run, b_key)
        left = await _not_started(run, flood_started)
        await _until_drained(run)
        used = cpu.sample(run.pids()).minus(before)
        await asyncio.to_thread(run.stop, "worker")
        figures[label] = {
            "b_alone_start_ms": _summary(alone),
            "b_behind_flood_start_ms": _summary(behind),
            "flood_not_started_when_b_done": left,
            "cpu_ms_per_job": cpu.per_job_ms(used, FLOOD + TRICKLE),
        }
    return figures


async def _trickle(run: Bench, key: str) -> list[float]:
    sent: dict[str, float] = {}
    async with Connection(run.services["gateway"].url, {"Authorization": f"Bearer {key}"}) as c:
        for i in range(TRICKLE):
            body = {"type": JOB_TYPE, "queue": QUEUE, "payload": {"b": i}}
            at = time.time()
            status, text = await c.send(c.post("/v1/jobs", body))
            if status != 201:
                raise RuntimeError(f"trickle refused: {status} {text[:300]!r}")
            sent[_id(text)] = at
    started = await _started(run, list(sent), timeout=300)
    if len(started) < len(sent):
        raise RuntimeError(f"{len(sent) - len(started)} trickle jobs did not start in 300 s")
    return [(started[i] - sent[i]) * 1000 for i in sent]


async def _flood(run: Bench) -> None:
    async with Connection(
        run.services["gateway"].url, {"Authorization": f"Bearer {run.api_key}"}
    ) as c:
        for start in range(0, FLOOD, 1_000):
            jobs = [
                {"type": JOB_TYPE, "queue": QUEUE, "payload": {"a": start + i}}
                for i in range(min(1_000, FLOOD - start))
            ]
            status, text = await c.send(c.post("/v1/jobs/batch", {"jobs": jobs}))
            if status != 201:
                raise RuntimeError(f"flood refused: {status} {text[:300]!r}")


async def _not_started(run: Bench, since: float) -> int:
    rows = await run.fetch(
        "SELECT count(*) AS n FROM jobs WHERE queue = $1 AND tenant_id = 'bench'"
        " AND state <> 'succeeded' AND created_at >= to_timestamp($2)",
        QUEUE,
        since,
    )
    return int(rows[0]["n"])


async def _until_drained(run: Bench, timeout: float = 600) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await run.fetch(
            "SELECT count(*) AS n FROM jobs WHERE queue = $1 AND state <> 'succeeded'", QUEUE
        )
        if rows[0]["n"] == 0:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the flood did not drain")


def _id(text: bytes) -> str:
    return str(json.loads(text)["id"])


def _summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50": round(statistics.median(ordered), 1),
        "p99": round(p99, 1),
        "max": round(ordered[-1], 1),
    }
