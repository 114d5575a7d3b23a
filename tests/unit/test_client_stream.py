"""``stream_events`` of both clients against a fake gateway (httpx.MockTransport): the
Server-Sent Events parser, resuming with Last-Event-ID, retries and errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jobline.api.events import example
from jobline.client import Forbidden, GatewayUnreachable, RouteNotServed
from jobline.client.streaming import FrameParser
from tests.unit import test_client as fake
from tests.unit.test_client import problem

# The fake gateway's fixtures: each test runs on the sync and the async client.
kind, clock, make = fake.kind, fake.clock, fake.make

PATH = "/v1/events/stream"


def frames(*parts: str) -> bytes:
    return "".join(parts).encode()


def event_frame(position: str, job: str) -> str:
    body = example()
    body["id"] = f"{job}:1"
    body["data"] = {**body["data"], "job_id": job}
    return f"id: {position}\nevent: {body['type']}\ndata: {json.dumps(body)}\n\n"


def test_the_parser_follows_the_event_source_rules():
    parser = FrameParser()
    lines = [
        ": a comment",
        "retry: 1500",
        "id: p0-1",
        "",  # an id alone: a position, no event
        "event: jobline.job.dead",
        "data:{",
        'data: "a": 1}',
        "unknown: ignored",
        "",
        "id: bad\0id",  # ignored: the position stays
        "data",
        "",
    ]
    out = [f for f in (parser.feed(line) for line in lines) if f is not None]
    assert [(f.id, f.event, f.data) for f in out] == [
        ("p0-1", None, None),
        ("p0-1", "jobline.job.dead", '{\n"a": 1}'),
        ("p0-1", None, ""),
    ]
    assert parser.retry_ms == 1500


async def collect(items: Any, count: int) -> list[Any]:
    got: list[Any] = []
    if isinstance(items, Iterator):
        for item in items:
            got.append(item)
            if len(got) == count:
                break
        return got
    async for item in items:
        got.append(item)
        if len(got) == count:
            break
    await items.aclose()
    return got


async def test_a_stream_that_ends_is_reopened_after_its_last_position(make, clock):
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:  # then the gateway shuts down: the stream ends
            body = frames("retry: 250\nid: p0-0\n\n", event_frame("p0-1", "a"))
        else:
            body = frames("id: p0-1\n\n", ": heartbeat\n\n", event_frame("p0-2", "b"))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = make(gateway)
    events = await collect(client.stream_events(event_types=["succeeded", "dead"]), 2)
    assert [e.job_id for e in events] == ["a", "b"]
    assert [e.id for e in events] == ["p0-1", "p0-2"]
    assert seen[0].url.params["event_type"] == "succeeded,dead"
    assert "last-event-id" not in seen[0].headers
    assert seen[1].headers["last-event-id"] == "p0-1"
    assert clock.sleeps == [0.25]  # the gateway's `retry:`


async def test_failures_are_retried_as_retry_after_says_and_a_refusal_is_raised(make, clock):
    answers = iter(
        [
            problem(503, "busy", type="urn:jobline:problem:too-many-streams"),
            httpx.ConnectError("refused"),
            None,
        ]
    )

    def gateway(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            answer.headers["Retry-After"] = "3"
            return answer
        return httpx.Response(200, content=frames(event_frame("p0-1", "a")))

    client = make(gateway)
    [event] = await collect(client.stream_events(last_event_id="p0-0"), 1)
    assert event.job_id == "a"
    assert clock.sleeps[0] >= 3

    forbidden = make(lambda request: problem(403, "The API key lacks the 'jobs:read' scope."))
    with pytest.raises(Forbidden):
        await collect(forbidden.stream_events(), 1)
    old = make(lambda request: problem(404, "Not Found"))
    with pytest.raises(RouteNotServed, match="GET /v1/events/stream"):
        await collect(old.stream_events(), 1)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(GatewayUnreachable):
        await collect(make(down).stream_events(), 1)
    with pytest.raises(GatewayUnreachable):
        await collect(make(down).stream_events(reconnect=False), 1)
