"""``GET /v1/events/stream`` over a real socket (the gateway in this process, uvicorn on a
port), real PostgreSQL and broker, read by real HTTP clients: httpx, the Client and
AsyncClient iterators, and ``jobline events tail --via-api``.

Events are written to ``<prefix>.events`` here, as the relay writes them (the same encoder),
so a test controls exactly which tenant, type and queue each has; the e2e test
(tests/e2e/test_event_stream.py) follows real jobs through the relay.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from jobline.broker import kafka
from jobline.client import AsyncClient, Client, RetryPolicy
from jobline.client.streaming import Frame, FrameParser
from jobline.core import cloudevent, topics
from tests.integration.client.conftest import env_for

# Only a guard against a hung test: nothing here waits on the clock to decide an outcome.
GUARD = 30.0
JOBLINE = str(Path(sys.executable).parent / "jobline")
FAST_FETCH = {"gateway_events_fetch_max_wait_ms": 100}


def lifecycle(
    tenant: str,
    state: str = "succeeded",
    *,
    job_type: str = "report.build",
    queue: str = "default",
    job_id: str | None = None,
    sequence: int = 1,
) -> tuple[str, bytes]:
    job_id = job_id or str(uuid4())
    data = {
        "job_id": job_id,
        "tenant": tenant,
        "type": job_type,
        "queue": queue,
        "state": "running" if state == "started" else state,
        "attempt": 1,
        "max_attempts": 3,
        "sequence": sequence,
        "timings": {},
        "error": None,
    }
    raw = cloudevent.encode_job_event(
        job_id=job_id, sequence=sequence, state=state, time=datetime.now(UTC), data=data
    )
    return f"{job_id}:{sequence}", raw


@pytest.fixture
async def events_topic(kafka_settings) -> str:
    name = topics.events_topic(kafka_settings.topic_prefix)
    await kafka.ensure_topics(kafka_settings, [name])
    return name


@pytest.fixture
async def publish(kafka_settings, events_topic):
    """``await publish(raw, partition=None)``: write one event (keyed by its job id)."""
    producer = kafka.make_producer(kafka_settings)
    await producer.start()

    async def send(event: tuple[str, bytes], partition: int | None = None) -> str:
        event_id, raw = event
        await producer.send_and_wait(
            events_topic, raw, key=event_id.split(":")[0].encode(), partition=partition
        )
        return event_id

    try:
        yield send
    finally:
        await producer.stop()


class SseStream:
    """One open stream, read frame by frame with the client's own parser."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.parser = FrameParser()

    async def frame(self) -> Frame:
        async with asyncio.timeout(GUARD):
            async for line in self.lines:
                frame = self.parser.feed(line)
                if frame is not None:
                    return frame
        raise AssertionError("the stream ended")

    async def events(self, count: int) -> list[Frame]:
        found: list[Frame] = []
        while len(found) < count:
            frame = await self.frame()
            if frame.data is not None:
                found.append(frame)
        return found


@asynccontextmanager
async def open_stream(
    url: str, key: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> AsyncIterator[SseStream]:
    async with (
        httpx.AsyncClient(base_url=url, timeout=GUARD) as http,
        http.stream(
            "GET",
            "/v1/events/stream",
            params=params,
            headers={"Authorization": f"Bearer {key}", **(headers or {})},
        ) as response,
    ):
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = SseStream(response)
        start = await stream.frame()  # the position frame: the stream is reading from here
        assert start.data is None
        assert start.id
        assert stream.parser.retry_ms is not None
        yield stream


def cloud_id(frame: Frame) -> str:
    assert frame.data is not None
    return str(json.loads(frame.data)["id"])


async def test_a_stream_shows_its_tenants_events_that_match_its_filters_and_no_other(
    serve_gateway, make_api_key, publish
):
    url = serve_gateway(**FAST_FETCH)
    tenant, other = f"t-{uuid4().hex[:8]}", f"t-{uuid4().hex[:8]}"
    key, other_key = await make_api_key(tenant=tenant), await make_api_key(tenant=other)
    watched_job = str(uuid4())
    async with (
        open_stream(url, key) as everything,
        open_stream(url, key, {"event_type": "succeeded,jobline.job.dead", "queue": "q1"}) as typed,
        open_stream(url, key, {"job_id": watched_job}) as one_job,
        open_stream(url, key, {"job_type": "mail.send"}) as by_type,
        open_stream(url, other_key) as others,
    ):
        # One partition: the order written is the order read, so the last expected event of
        # each stream proves nothing else came before it.
        sent = {
            "ok_q1": await publish(lifecycle(tenant, "succeeded", queue="q1"), 0),
            "queued_q1": await publish(lifecycle(tenant, "queued", queue="q1"), 0),
            "ok_q2": await publish(lifecycle(tenant, "succeeded", queue="q2"), 0),
            "other_ok_q1": await publish(lifecycle(other, "succeeded", queue="q1"), 0),
            "other_watched": await publish(
                lifecycle(other, "started", job_id=watched_job, job_type="mail.send"), 0
            ),
            "watched": await publish(
                lifecycle(tenant, "started", job_id=watched_job, job_type="mail.send"), 0
            ),
            "dead_q1": await publish(lifecycle(tenant, "dead", queue="q1"), 0),
            "other_last": await publish(lifecycle(other, "cancelled"), 0),
        }
        expected = {
            everything: ["ok_q1", "queued_q1", "ok_q2", "watched", "dead_q1"],
            typed: ["ok_q1", "dead_q1"],
            one_job: ["watched"],
            by_type: ["watched"],
            others: ["other_ok_q1", "other_watched", "other_last"],
        }
        for stream, names in expected.items():
            frames = await stream.events(len(names))
            assert [cloud_id(f) for f in frames] == [sent[n] for n in names]
            for frame in frames:
                event = json.loads(frame.data or "")
                assert frame.event == event["type"]
                assert event["data"]["tenant"] == (tenant if stream is not others else other)


async def test_last_event_id_resumes_after_the_last_event_seen_without_loss_or_duplicates(
    serve_gateway, make_api_key, publish
):
    url = serve_gateway(**FAST_FETCH)
    tenant = f"t-{uuid4().hex[:8]}"
    key = await make_api_key(tenant=tenant)
    sent: list[str] = []
    async with open_stream(url, key) as first:
        start = first.parser.last_id
        for _ in range(6):  # keyed by job: spread over the partitions
            sent.append(await publish(lifecycle(tenant)))
        seen = await first.events(3)
    resume_at = seen[-1].id
    for _ in range(4):
        sent.append(await publish(lifecycle(tenant)))

    async with open_stream(url, key, headers={"Last-Event-ID": resume_at or ""}) as resumed:
        rest = await resumed.events(7)
    assert sorted(map(cloud_id, seen + rest)) == sorted(sent)  # every one, once

    # The query parameter, from the first frame of the first stream: all ten again.
    assert start
    async with open_stream(url, key, {"last_event_id": start}) as again:
        assert sorted(map(cloud_id, await again.events(10))) == sorted(sent)
    # The header wins over the parameter (an EventSource reconnects with the URL it opened).
    async with open_stream(
        url, key, {"last_event_id": start}, headers={"Last-Event-ID": resume_at or ""}
    ) as both:
        assert sorted(map(cloud_id, await both.events(7))) == sorted(map(cloud_id, rest))


async def test_a_heartbeat_moves_the_position_past_events_the_filter_skipped(
    serve_gateway, make_api_key, publish
):
    url = serve_gateway(**FAST_FETCH, gateway_event_heartbeat_seconds=0.3)
    tenant = f"t-{uuid4().hex[:8]}"
    key = await make_api_key(tenant=tenant)
    watched = str(uuid4())
    async with open_stream(url, key, {"job_id": watched}) as stream:
        start = stream.parser.last_id
        for _ in range(3):
            await publish(lifecycle(tenant))  # not the watched job's
        moved = start
        while moved == start:
            frame = await stream.frame()
            assert frame.data is None  # nothing of the watched job was sent
            moved = frame.id
    # Resuming from the moved position skips what was already passed over.
    done = await publish(lifecycle(tenant, job_id=watched))
    async with open_stream(url, key, {"job_id": watched}, {"Last-Event-ID": moved or ""}) as s:
        assert [cloud_id(f) for f in await s.events(1)] == [done]


async def test_refusals_are_problems(serve_gateway, make_api_key, events_topic):
    url = serve_gateway(
        **FAST_FETCH, gateway_event_streams_max=2, gateway_event_streams_per_tenant_max=1
    )
    key, neighbour, third = await make_api_key(), await make_api_key(), await make_api_key()
    reader = await make_api_key(scopes="jobs:write")
    async with httpx.AsyncClient(base_url=url, timeout=GUARD) as http:
        path = "/v1/events/stream"
        auth = {"Authorization": f"Bearer {key}"}
        assert (await http.get(path)).status_code == 401
        no_read = await http.get(path, headers={"Authorization": f"Bearer {reader}"})
        assert no_read.status_code == 403
        for params, headers in (
            ({"event_type": "finished"}, {}),
            ({"last_event_id": "p0-1.p0-2"}, {}),  # the same partition twice
            ({}, {"Last-Event-ID": "yesterday"}),
            ({"tenant": "someone-else"}, {}),  # not a parameter: the key says the tenant
        ):
            bad = await http.get(path, params=params, headers={**auth, **headers})
            assert bad.status_code == 422, (params, headers, bad.text)
            assert bad.headers["content-type"] == "application/problem+json"

        async with open_stream(url, key), open_stream(url, neighbour):
            mine = await http.get(path, headers=auth)  # the tenant's share is taken
            assert mine.status_code == 429
            assert mine.headers["retry-after"]
            assert mine.json()["type"].endswith("too-many-streams")
            busy = await http.get(path, headers={"Authorization": f"Bearer {third}"})
            assert busy.status_code == 503  # the gateway's capacity is
            assert busy.headers["retry-after"]
        # The slot comes back when the client goes away.
        async with asyncio.timeout(GUARD):
            while True:
                async with http.stream("GET", path, headers=auth) as again:
                    if again.status_code == 200:
                        break
                await asyncio.sleep(0.05)


async def test_the_clients_and_the_cli_read_the_stream(
    serve_gateway, make_api_key, publish, tmp_path
):
    url = serve_gateway(**FAST_FETCH)
    tenant = f"t-{uuid4().hex[:8]}"
    key = await make_api_key(tenant=tenant)
    async with open_stream(url, key) as probe:
        start = probe.parser.last_id or ""
    ok = await publish(lifecycle(tenant, "succeeded", queue="q1"))
    queued = await publish(lifecycle(tenant, "queued", queue="q1"))
    dead = await publish(lifecycle(tenant, "dead", queue="q1"))

    async with AsyncClient(url, key) as client:
        stream = client.stream_events(event_types=["succeeded", "dead"], last_event_id=start)
        got = []
        async with asyncio.timeout(GUARD):
            async for event in stream:
                got.append(event)
                if len(got) == 2:
                    break
        await stream.aclose()  # type: ignore[attr-defined]
    assert sorted(e.event.id for e in got) == sorted([ok, dead])
    assert {e.data.tenant for e in got} == {tenant}

    def read_sync() -> tuple[str, str]:
        with Client(url, key, retry=RetryPolicy(max_attempts=2)) as sync:
            events = sync.stream_events(queue="q1", last_event_id=got[0].id)
            first = next(iter(events))
            return first.event.id, first.type

    after_first, _ = await asyncio.to_thread(read_sync)
    # Right after the async client's first event: a later one of queue q1, whatever its type.
    assert after_first in {queued, got[1].event.id}

    cli = await asyncio.to_thread(
        subprocess.run,
        [
            JOBLINE,
            "events",
            "tail",
            "--via-api",
            "--last-event-id",
            start,
            "--type",
            "dead",
            "--count",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_without_jobline_env(), **env_for(url, key)},
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    [line] = cli.stdout.splitlines()
    assert json.loads(line)["id"] == dead


def _without_jobline_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBLINE_")}
