"""Workflows end to end in-process: the gateway (httpx over ASGI), the real relay and a worker
runtime against this run's PostgreSQL and broker. Each test uses its own queue."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import pytest

from jobline_worker import NonRetryable, Worker
from jobline_worker.context import JobContext
from jobline_worker.runtime import Runtime
from tests.integration.gateway.conftest import (  # noqa: F401  (fixtures, re-exported)
    bearer,
    client,
    gateway_settings,
    make_client,
)
from tests.integration.worker.conftest import relay, worker_settings  # noqa: F401
from tests.support import wait_for

RUNS: Counter[str] = Counter()
# Parent results each run of a node saw, by job id.
SEEN: dict[str, dict[str, Any]] = {}
# Refs that fail (NonRetryable) until removed from here.
FAILING: set[str] = set()

app = Worker()


@app.job("wf-add")
async def add(ctx: JobContext, payload: dict[str, Any]) -> int:
    """The sum of the parents' results plus ``n``: a chain's result shows every step."""
    RUNS[str(ctx.job_id)] += 1
    SEEN[str(ctx.job_id)] = ctx.parent_results
    if payload.get("fail_key") in FAILING:
        raise NonRetryable(f"{payload['fail_key']} fails")
    parents = [p["result"] for p in ctx.parent_results.values() if p["state"] == "succeeded"]
    return int(payload.get("n", 0)) + sum(int(r) for r in parents)


@app.job("wf-wait")
async def wait(ctx: JobContext, payload: dict[str, Any]) -> None:
    RUNS[str(ctx.job_id)] += 1
    await asyncio.sleep(payload.get("seconds", 30))


@app.job("wf-spawn")
async def spawn(ctx: JobContext, payload: dict[str, Any]) -> list[str]:
    RUNS[str(ctx.job_id)] += 1
    ids = [str(ctx.enqueue("wf-add", {"n": i}, queue=payload["queue"])) for i in range(3)]
    if payload.get("crash"):
        raise NonRetryable("crashed after enqueueing")
    return ids


@app.job("wf-spawn-fan")
async def spawn_fan(ctx: JobContext, payload: dict[str, Any]) -> str:
    """Five children and a callback that waits for them (a workflow of its children)."""
    ids = [ctx.enqueue("wf-add", {"n": i}, queue=payload["queue"]) for i in range(5)]
    return str(ctx.enqueue("wf-add", {"n": 100}, queue=payload["queue"], after=ids))


@pytest.fixture
def queue() -> str:
    return f"wf{uuid4().hex[:10]}"


@pytest.fixture
def run_worker(database_url, kafka_settings):
    @asynccontextmanager
    async def start(queue: str, concurrency: int = 32, **changes: Any) -> AsyncIterator[Runtime]:
        # A short fetch wait, as `jobline dev` runs against this broker (a waiting fetch is
        # not answered when data arrives): a chain's step would wait it out at every hop.
        settings = worker_settings(
            database_url, kafka_settings, **{"worker_fetch_max_wait_ms": 5, **changes}
        )
        runtime = Runtime(
            settings, app, [queue], concurrency, consumer_options=settings.consumer_options()
        )
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop()

    return start


async def wait_workflow(
    http: Any, key: str, workflow_id: str, states: set[str], within: float = 60.0
) -> dict[str, Any]:
    """Poll GET /v1/workflows/{id} until its status is one of ``states``."""

    async def check() -> dict[str, Any] | None:
        response = await http.get(f"/v1/workflows/{workflow_id}", headers=bearer(key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] in states else None

    result: dict[str, Any] = await wait_for(check, within, interval=0.2)
    return result


def nodes_by_ref(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["ref"]: n for n in workflow["nodes"]}
