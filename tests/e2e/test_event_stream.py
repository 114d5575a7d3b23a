"""The event stream end to end: the gateway and relay as processes, a job submitted through
the API, its lifecycle event read from ``GET /v1/events/stream`` by the AsyncClient; and a
gateway told to stop (SIGTERM) with a stream open ends the stream and exits 0."""

from __future__ import annotations

import asyncio

import httpx

from jobline.client import AsyncClient
from jobline.client.streaming import FrameParser
from tests.support import GATEWAY_ENV, RELAY_ENV

GUARD = 60.0  # only against a hung test


async def test_a_submitted_jobs_event_is_streamed_and_sigterm_ends_the_stream(stack, make_api_key):
    gateway = stack.start("gateway", env=GATEWAY_ENV)
    stack.start("relay", env=RELAY_ENV)
    key = await make_api_key()
    auth = {"Authorization": f"Bearer {key}"}
    async with (
        AsyncClient(gateway.url, key) as client,
        httpx.AsyncClient(base_url=gateway.url, headers=auth, timeout=GUARD) as http,
        http.stream("GET", "/v1/events/stream") as raw,
    ):
        assert raw.status_code == 200, (await raw.aread()).decode()
        parser = FrameParser()
        lines = raw.aiter_lines()
        async with asyncio.timeout(GUARD):
            while parser.feed(await anext(lines)) is None:
                pass
        start = parser.last_id  # the stream reads from here on

        job = await client.submit("stream.probe", {"n": 1})
        events = client.stream_events(job_id=job.id, last_event_id=start)
        async with asyncio.timeout(GUARD):
            first = await anext(events)
        await events.aclose()  # type: ignore[attr-defined]
        assert first.type == "jobline.job.queued"
        assert first.job_id == str(job.id)

        # The raw stream is still open; SIGTERM the gateway: the stream ends, the process
        # exits 0 (uvicorn would wait for the open response forever if it did not end).
        code = await asyncio.to_thread(gateway.terminate, 30)
        async with asyncio.timeout(GUARD):
            rest = [line async for line in lines]
    assert code == 0, gateway.tail()
    assert any(line.startswith("data: ") and str(job.id) in line for line in rest)
