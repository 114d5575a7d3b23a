"""The client against real services: the gateway (and relay and worker where jobs must run)
as processes, real PostgreSQL and broker. Faults are injected on the client's side of the
connection only; everything the gateway does is real."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import httpx
import pytest

from jobline.api import JobState
from jobline.client import (
    AsyncClient,
    Client,
    RetryPolicy,
    Unauthorized,
)
from tests.support import GATEWAY_ENV, RELAY_ENV, start_worker


class LoseFirstAnswer(httpx.BaseTransport):
    """Sends every request to the gateway for real, but drops the first answer on the floor
    (as if the connection broke after the gateway committed)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = self.inner.handle_request(request)
        if len(self.sent) == 1:
            response.read()
            response.close()
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response


async def _jobs_with_key(db, key: str) -> int:
    async with db.connection() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM jobs WHERE idempotency_key = $1", key))


@pytest.fixture
def gateway(stack):
    return stack.start("gateway", env=GATEWAY_ENV)


async def test_a_lost_answer_is_retried_with_the_same_key_and_makes_one_job(
    gateway, make_api_key, db
):
    transport = LoseFirstAnswer()
    key = await make_api_key()
    with Client(gateway.url, key, transport=transport) as client:
        job = await asyncio.to_thread(client.submit, "echo", {"lost": True})
    assert len(transport.sent) == 2
    [first, second] = (r.headers["idempotency-key"] for r in transport.sent)
    assert first == second
    assert await _jobs_with_key(db, first) == 1  # the retry was replayed, not re-run
    assert job.status is JobState.QUEUED


async def test_429_is_waited_out_as_retry_after_says(stack, make_api_key):
    limited = stack.start(
        "gateway",
        env={
            **GATEWAY_ENV,
            "JOBLINE_GATEWAY_RATE_LIMIT_PER_SECOND": "1",
            "JOBLINE_GATEWAY_RATE_LIMIT_BURST": "1",
        },
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    key = await make_api_key()
    async with AsyncClient(limited.url, key, sleep=sleep) as client:
        started = time.monotonic()
        jobs = [await client.submit("echo", {"i": i}) for i in range(3)]
        elapsed = time.monotonic() - started
    assert len({j.id for j in jobs}) == 3
    assert slept  # the gateway said 429 at least once...
    assert all(s >= 1 for s in slept)  # ...with Retry-After: 1, which the client honoured
    assert elapsed >= 1.5  # three submissions at one per second


async def test_wait_events_pages_batches_and_keys_against_the_running_stack(
    stack, gateway, make_api_key
):
    stack.start("relay", env=RELAY_ENV)
    start_worker(stack)
    key = await make_api_key()
    async with AsyncClient(gateway.url, key) as client:
        ok = await client.submit("echo", {"hello": "world"})
        done = await client.wait(ok.id, timeout=60)
        assert done.status is JobState.SUCCEEDED
        assert done.result == {"hello": "world"}

        failing = await client.submit(
            "always-fail",
            {},
            max_attempts=2,
            backoff={"kind": "fixed", "base_seconds": 0.2, "max_seconds": 0.2},
        )
        events = [e async for e in client.job_events(failing.id, timeout=60)]
        assert events[0].kind == "snapshot"
        assert events[-1].status is JobState.DEAD
        assert events[-1].job.attempt == 2
        assert len(events) >= 2

        batch = await client.submit_batch(
            [{"type": "echo", "payload": {"i": i}} for i in range(5)], chunk_size=2
        )
        assert len({j.id for j in batch}) == 5
        paged = [j.id async for j in client.iter_jobs(type="echo", page_size=2)]
        assert {j.id for j in batch} | {ok.id} <= set(paged)
        assert len(paged) == len(set(paged))

        dead = [j.id async for j in client.iter_dead_jobs()]
        assert failing.id in dead
        redriven = await client.redrive_job(failing.id)
        assert redriven.status is JobState.QUEUED

        # Counts over the tenant's jobs, whatever state the running worker has them in by
        # now: ok, the five of the batch and the redriven one.
        queues = {q.name: q for q in (await client.queues()).queues}
        assert sum(queues["default"].counts.values()) == 7
        stats = await client.stats(window_seconds=600)
        assert stats.finished[JobState.SUCCEEDED] >= 1
        assert (await client.dlq_groups(type="always-fail")).groups == []  # redriven

        # Keys through the operator API: a new tenant's key works until revoked.
        tenant = f"t-{uuid4().hex[:8]}"
        created = await client.create_key(tenant, ["jobs:read"], name="probe")
        assert created.key.startswith("jl_")
        assert [k.id for k in await client.list_keys(tenant=tenant)] == [created.id]
        async with AsyncClient(gateway.url, created.key, retry=RetryPolicy(max_attempts=1)) as c:
            assert (await c.list_jobs()).jobs == []
            await client.revoke_key(created.id)
            with pytest.raises(Unauthorized):
                await c.list_jobs()


async def test_the_overhead_script_measures_real_submissions(gateway, make_api_key, db):
    from jobline.client import overhead

    key = await make_api_key()
    figures = await asyncio.to_thread(overhead.measure, 300, gateway.url, key)
    print(f"client overhead against a gateway process: {figures}")
    assert figures["mode"] == "gateway"
    assert figures["client_cpu_us_per_submit"] > 0
    async with db.connection() as conn:
        made = await conn.fetchval(
            "SELECT count(*) FROM jobs j JOIN api_keys k ON k.tenant_id = j.tenant_id"
            " WHERE k.prefix = $1",
            key.split("_")[1],
        )
    assert made >= 2 * 300  # both clients really submitted (after their warm-ups)
