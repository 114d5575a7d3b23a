"""The benchmark's worker app: one no-op handler that records when it started.

The start time is the handler's own ``time.time()`` (the same wall clock the load generator
reads on this machine), returned as the job's result so the harness reads it afterwards
without adding work to the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobline_worker.context import JobContext
from jobline_worker.registry import Worker

worker = Worker()


@worker.job("bench.noop")
async def noop(ctx: JobContext, payload: Any) -> dict[str, float]:
    """Does nothing; answers its start time."""
    return {"t": time.time()}


@worker.job("bench.sleep")
async def sleep(ctx: JobContext, payload: Any) -> dict[str, float]:
    """Holds its slot for ``payload["s"]`` seconds (the backlog of the priority workload)."""
    started = time.time()
    await asyncio.sleep(float(payload.get("s", 0.1)))
    return {"t": started}


@worker.job("bench.rated", rate_limit="10/s")
async def rated(ctx: JobContext, payload: Any) -> dict[str, float]:
    """At most 10 start in any second, across every worker (the rate-limit workload)."""
    return {"t": time.time()}


@worker.job("bench.keyed", concurrency=5, concurrency_key="customer_id")
async def keyed(ctx: JobContext, payload: Any) -> dict[str, float]:
    """At most 5 run at once per customer (the concurrency workload)."""
    started = time.time()
    await asyncio.sleep(float(payload.get("s", 0.05)))
    return {"t": started}
