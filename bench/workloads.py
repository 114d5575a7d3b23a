"""The four workloads of ``make bench`` (issue "Speed"), each returning its figures.

- A1 enqueue one by one: one keep-alive connection, one request at a time, no worker.
- A2 enqueue in bulk: the batch endpoint, 1,000 jobs per request, one request at a time.
- B drain: A2's jobs are all out of the outbox (the relay finished: a window of them on the
  work topic, the rest parked for tenant fairness and published as the worker starts them);
  one worker process is spawned; rate = (N - 1) / (last handler start - first handler start).
- C latency: a warm worker; jobs submitted one at a time at a fixed rate with absolute-deadline
  pacing; latency = handler start - the moment just before the submit call (both time.time()
  on this machine). Then the same with 4 concurrent clients.

CPU per job of every process comes from /proc around each workload (see bench/cpu.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

from bench import cpu
from bench.http import Connection
from bench.servers import JOB_TYPE, Bench, reset_statements, top_statements

N = int(os.environ.get("JOBLINE_BENCH_JOBS", "20000"))
BULK = 1_000
PACED_SECONDS = float(os.environ.get("JOBLINE_BENCH_PACED_SECONDS", "20"))
SETTLE_SECONDS = 30.0
WORKER_ARGS = ("--app", "bench.handlers:worker", "--concurrency", "64")


def _auth(run: Bench) -> dict[str, str]:
    return {"Authorization": f"Bearer {run.api_key}"}


def _cpu_figures(used: dict[str, float], jobs: int) -> dict[str, float]:
    return cpu.per_job_ms(used, jobs)


def _refused(status: int, body: bytes) -> None:
    """A refused submission voids the figures: say why, once per run, on stderr."""
    global _told  # noqa: PLW0603 - one message per run, not one per request
    if not _told:
        _told = True
        print(f"bench: a submission was refused: {status} {body[:500]!r}", file=sys.stderr)


_told = False


async def enqueue_one_by_one(run: Bench, queue: str) -> dict[str, Any]:
    """A1: N POST /v1/jobs, one at a time on one connection."""
    async with Connection(run.services["gateway"].url, _auth(run)) as conn:
        requests = [
            conn.post("/v1/jobs", {"type": JOB_TYPE, "queue": queue, "payload": {"i": i}})
            for i in range(N)
        ]
        await reset_statements(run)
        before = cpu.sample(run.pids())
        started = time.perf_counter()
        errors = 0
        for request in requests:
            status, body = await conn.send(request)
            if status != 201:
                errors += 1
                _refused(status, body)
        elapsed = time.perf_counter() - started
    await run.wait_outbox_empty()  # the relay's work for these jobs counts too
    used = cpu.sample(run.pids()).minus(before)
    return {
        "jobs": N,
        "errors": errors,
        "jobs_per_second": round((N - errors) / elapsed, 1),
        "ms_per_request": round(elapsed * 1000 / N, 3),
        "cpu_ms_per_job": _cpu_figures(used, N),
        "statements": await top_statements(run, N),
    }


async def enqueue_bulk(run: Bench, queue: str) -> dict[str, Any]:
    """A2: N jobs through POST /v1/jobs/batch, BULK per request, one request at a time."""
    async with Connection(run.services["gateway"].url, _auth(run)) as conn:
        requests = [
            conn.post(
                "/v1/jobs/batch",
                {
                    "jobs": [
                        {"type": JOB_TYPE, "queue": queue, "payload": {"i": start + i}}
                        for i in range(BULK)
                    ]
                },
            )
            for start in range(0, N, BULK)
        ]
        before = cpu.sample(run.pids())
        started = time.perf_counter()
        errors = 0
        for request in requests:
            status, body = await conn.send(request)
            if status != 201:
                errors += 1
                _refused(status, body)
        elapsed = time.perf_counter() - started
    await run.wait_outbox_empty()
    used = cpu.sample(run.pids()).minus(before)
    accepted = (len(requests) - errors) * BULK
    return {
        "jobs": N,
        "errors": errors,
        "jobs_per_second": round(accepted / elapsed, 1),
        "cpu_ms_per_job": _cpu_figures(used, N),
    }


async def drain(run: Bench, queue: str) -> dict[str, Any]:
    """B: spawn one worker onto N published jobs; time from first to last handler start."""
    await reset_statements(run)
    before = cpu.sample(run.pids())
    spawned = time.time()
    await asyncio.to_thread(run.start, "worker", "worker", *WORKER_ARGS, "--queues", queue)
    ready = time.time()
    at_ready = cpu.sample(run.pids())
    starts = await _starts(run, queue, N, timeout=300)
    used = cpu.sample(run.pids()).minus(at_ready)
    startup = at_ready.minus(before)["worker"]
    await asyncio.to_thread(run.stop, "worker")
    first, last = starts[0], starts[-1]
    return {
        "jobs": N,
        "completed": len(starts),
        "jobs_per_second": round((len(starts) - 1) / (last - first), 1),
        "spawn_to_ready_s": round(ready - spawned, 2),
        "spawn_to_first_start_s": round(first - spawned, 2),
        "worker_startup_cpu_s": round(startup, 2),
        "cpu_ms_per_job": _cpu_figures(used, N),
        "statements": await top_statements(run, N),
    }


async def _starts(run: Bench, queue: str, total: int, timeout: float) -> list[float]:  # noqa: ASYNC109
    """Sorted handler start times of the queue's jobs, once ``total`` have succeeded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await run.fetch(
            "SELECT count(*) AS n FROM jobs WHERE queue = $1 AND state = 'succeeded'", queue
        )
        if rows[0]["n"] >= total:
            break
        await asyncio.sleep(0.5)
    rows = await run.fetch(
        "SELECT (result->>'t')::float8 AS started FROM jobs"
        " WHERE queue = $1 AND state = 'succeeded'",
        queue,
    )
    return sorted(float(r["started"]) for r in rows)


async def latency(run: Bench, queue: str, rate: int, clients: int) -> dict[str, Any]:
    """C: ``clients`` connections submitting one job at a time, ``rate`` jobs/s in all."""
    per_client = rate / clients
    total_per_client = int(per_client * PACED_SECONDS)
    sent: dict[str, float] = {}
    failures = 0

    async def client(k: int, start: float) -> None:
        nonlocal failures
        async with Connection(run.services["gateway"].url, _auth(run)) as conn:
            requests = [
                conn.post(
                    "/v1/jobs",
                    {"type": JOB_TYPE, "queue": queue, "payload": {"c": k, "i": i}},
                )
                for i in range(total_per_client)
            ]
            await ready.wait()
            offset = start + k / rate  # the clients interleave evenly
            end = start + PACED_SECONDS  # a client that falls behind sends fewer, not later
            for i, request in enumerate(requests):
                if time.time() >= end:
                    break
                delay = offset + i / per_client - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                before = time.time()
                status, body = await conn.send(request)
                if status == 201:
                    sent[json.loads(body)["id"]] = before
                else:
                    failures += 1

    ready = asyncio.Event()
    start = time.time() + 0.5
    tasks = [asyncio.create_task(client(k, start)) for k in range(clients)]
    await asyncio.sleep(0.3)
    await reset_statements(run)
    before_cpu = cpu.sample(run.pids())
    ready.set()
    await asyncio.gather(*tasks)
    finished_sending = time.time()
    starts = await _started(run, list(sent), SETTLE_SECONDS)
    used = cpu.sample(run.pids()).minus(before_cpu)
    latencies = sorted((starts[i] - t) * 1000 for i, t in sent.items() if i in starts)
    figures: dict[str, Any] = {
        "target_per_second": rate,
        "clients": clients,
        "sent": len(sent),
        "failures": failures,
        "completed": len(latencies),
        "achieved_per_second": round(len(sent) / (finished_sending - start), 1),
    }
    if latencies:
        q = statistics.quantiles(latencies, n=100, method="inclusive")
        figures |= {
            "p50_ms": round(q[49], 1),
            "p95_ms": round(q[94], 1),
            "p99_ms": round(q[98], 1),
            "max_ms": round(latencies[-1], 1),
            # Backlog: how long after the last submission the last job started.
            "last_start_after_last_send_ms": round(
                (max(starts.values()) - finished_sending) * 1000, 1
            ),
            "p50_stages_ms": await _stages(run, sent),
        }
    figures["cpu_ms_per_job"] = _cpu_figures(used, max(len(sent), 1))
    figures["statements"] = await top_statements(run, max(len(sent), 1))
    return figures


async def _started(run: Bench, ids: list[str], timeout: float) -> dict[str, float]:  # noqa: ASYNC109
    """Handler start time by job id, waiting up to ``timeout`` for the stragglers."""
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    while True:
        rows = await run.fetch(
            "SELECT id::text AS id, (result->>'t')::float8 AS started FROM jobs"
            " WHERE id = ANY(CAST($1 AS uuid[])) AND state = 'succeeded'",
            ids,
        )
        found = {r["id"]: float(r["started"]) for r in rows}
        if len(found) >= len(ids) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def _stages(run: Bench, sent: dict[str, float]) -> dict[str, float]:
    """Where a job's latency goes, p50 of each stage in ms: the gateway's stamp of the job
    (created_at) and the worker's stamp of its claim (started_at) split the path."""
    rows = await run.fetch(
        "SELECT id::text AS id, extract(epoch FROM created_at)::float8 AS created,"
        " extract(epoch FROM started_at)::float8 AS claimed, (result->>'t')::float8 AS started"
        " FROM jobs WHERE id = ANY(CAST($1 AS uuid[])) AND state = 'succeeded'",
        list(sent),
    )
    parts: dict[str, list[float]] = {"to_gateway": [], "gateway_to_claim": [], "claim_to_run": []}
    for r in rows:
        parts["to_gateway"].append(r["created"] - sent[r["id"]])
        parts["gateway_to_claim"].append(r["claimed"] - r["created"])
        parts["claim_to_run"].append(r["started"] - r["claimed"])
    return {k: round(statistics.median(v) * 1000, 2) for k, v in parts.items() if v}


async def warm_up(run: Bench, queue: str, jobs: int = 300) -> None:
    """A few hundred jobs through the running worker so C measures a warm one."""
    async with Connection(run.services["gateway"].url, _auth(run)) as conn:
        ids = []
        for i in range(jobs):
            status, body = await conn.send(
                conn.post("/v1/jobs", {"type": JOB_TYPE, "queue": queue, "payload": {"w": i}})
            )
            if status == 201:
                ids.append(json.loads(body)["id"])
            await asyncio.sleep(0.005)
    await _started(run, ids, SETTLE_SECONDS)
