"""Retries: the policy as pure functions, then which calls each client repeats and how long
it waits (a fake clock and sleep; no real time passes)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from jobline.client import (
    GatewayUnreachable,
    RateLimited,
    RetryPolicy,
    ServerError,
    parse_retry_after,
)
from jobline.client._transport import retryable_error
from tests.unit import test_client as fake
from tests.unit.test_client import FAST, call, job_json, problem

# The fake gateway's fixtures: each test runs on the sync and the async client.
kind, clock, make = fake.kind, fake.clock, fake.make

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


# --- the policy ---------------------------------------------------------------------------


def test_full_jitter_stays_under_a_doubling_capped_ceiling():
    policy = RetryPolicy(base_delay_seconds=0.1, max_delay_seconds=1.0)
    rng = random.Random(1)
    for attempt, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (40, 1.0)):
        draws = [policy.backoff(attempt, rng) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.9  # spread over the whole range, not a fixed wait
        assert min(draws) < ceiling * 0.1


def test_delay_honours_retry_after_and_gives_up_on_attempts_or_time():
    policy = RetryPolicy(max_attempts=3, max_elapsed_seconds=10, max_delay_seconds=0.5)
    rng = random.Random(2)
    assert policy.delay(attempt=1, elapsed=0, rng=rng, retry_after=4) == 4
    assert policy.delay(attempt=1, elapsed=0, rng=rng, retry_after=0) is not None
    assert policy.delay(attempt=3, elapsed=0, rng=rng) is None  # attempts spent
    assert policy.delay(attempt=1, elapsed=7, rng=rng, retry_after=4) is None  # past 10 s
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_which_statuses_are_retried():
    policy = RetryPolicy()
    for status in (429, 503):
        assert policy.retryable_status(status, safe=False)
    for status in (502, 504, 500):
        assert policy.retryable_status(status, safe=True)
        assert not policy.retryable_status(status, safe=False)
    for status in (400, 401, 403, 404, 409, 422):
        assert not policy.retryable_status(status, safe=True)
    assert not RetryPolicy(retry_other_5xx=False).retryable_status(500, safe=True)


def test_connection_errors_are_retried_when_nothing_was_sent_or_the_call_is_safe():
    request = httpx.Request("POST", "http://gw/v1/jobs/x/cancel")
    assert retryable_error(httpx.ConnectError("refused", request=request), safe=False)
    assert retryable_error(httpx.ConnectTimeout("slow", request=request), safe=False)
    assert not retryable_error(httpx.ReadTimeout("lost", request=request), safe=False)
    assert not retryable_error(httpx.RemoteProtocolError("cut", request=request), safe=False)
    assert retryable_error(httpx.ReadTimeout("lost", request=request), safe=True)


def test_retry_after_is_seconds_or_an_http_date():
    assert parse_retry_after("3", NOW) == 3
    assert parse_retry_after(" 1.5 ", NOW) == 1.5
    assert parse_retry_after("-4", NOW) == 0
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, NOW) == 90
    earlier = format_datetime(NOW - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, NOW) == 0
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("soon", NOW) is None


# --- the clients --------------------------------------------------------------------------


class Flaky:
    """Answers each scripted failure in turn, then succeeds; records every request."""

    def __init__(self, *failures: Any, ok: httpx.Response | None = None) -> None:
        self.failures = list(failures)
        self.ok = ok or httpx.Response(201, json=job_json())
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            assert isinstance(failure, httpx.Response)
            return failure
        return self.ok


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("refused")


def read_error() -> httpx.ReadError:
    return httpx.ReadError("connection reset after the request was sent")


async def test_a_submission_is_retried_with_one_idempotency_key(make, clock):
    gateway = Flaky(connect_error(), problem(503, "PostgreSQL is unavailable."), read_error())
    client = make(gateway)
    job = await call(client.submit("echo", {"n": 1}))
    assert job.status.value == "queued"
    keys = {r.headers["idempotency-key"] for r in gateway.requests}
    assert len(gateway.requests) == 4
    assert len(keys) == 1  # the same logical call: the gateway replays, never duplicates
    assert len(clock.sleeps) == 3


async def test_retry_after_is_waited_out(make, clock):
    limited = problem(429, "Rate limit exceeded.")
    limited.headers["Retry-After"] = "2"
    gateway = Flaky(limited, ok=httpx.Response(200, json=job_json()))
    client = make(gateway)
    await call(client.get_job(uuid4()))
    assert clock.sleeps == [2.0]


async def test_rate_limited_until_the_attempts_run_out(make, clock):
    def limited(request: httpx.Request) -> httpx.Response:
        response = problem(429, "Rate limit exceeded for this API key.")
        response.headers["Retry-After"] = "1"
        return response

    client = make(limited)
    with pytest.raises(RateLimited) as caught:
        await call(client.submit("echo"))
    assert caught.value.attempts == FAST.max_attempts
    assert caught.value.retry_after == 1
    assert clock.sleeps == [1.0] * (FAST.max_attempts - 1)


async def test_a_retry_after_beyond_the_time_budget_ends_the_retries_at_once(make, clock):
    unavailable = problem(503, "PostgreSQL is unavailable.")
    unavailable.headers["Retry-After"] = "120"
    gateway = Flaky(unavailable)
    client = make(gateway, retry=RetryPolicy(max_elapsed_seconds=30))
    with pytest.raises(ServerError, match="503"):
        await call(client.cancel_job(uuid4()))
    assert clock.sleeps == []
    assert len(gateway.requests) == 1


async def test_unsafe_calls_are_not_repeated_after_502_500_or_a_lost_answer(make, clock):
    # Cancel carries no key: a repeat after the gateway may have acted is not ours to risk.
    lost: list[Any] = [problem(502, "Bad Gateway"), problem(500, "boom"), read_error()]
    for failure in lost:
        gateway = Flaky(failure, ok=httpx.Response(200, json=job_json()))
        client = make(gateway)
        with pytest.raises((ServerError, GatewayUnreachable)):
            await call(client.cancel_job(uuid4()))
        assert len(gateway.requests) == 1
    # ...but a refused connection (nothing sent) and 429/503 (refused before work) are.
    refused: list[Any] = [connect_error(), problem(429, "slow down"), problem(503, "db down")]
    for failure in refused:
        gateway = Flaky(failure, ok=httpx.Response(200, json=job_json()))
        client = make(gateway)
        await call(client.cancel_job(uuid4()))
        assert len(gateway.requests) == 2
    assert clock.sleeps  # and they waited in between


async def test_safe_calls_are_repeated_after_502_504_500_and_a_lost_answer(make):
    for failure in (problem(502, "x"), problem(504, "x"), problem(500, "x"), read_error()):
        gateway = Flaky(failure, ok=httpx.Response(200, json=job_json()))
        client = make(gateway)
        await call(client.get_job(uuid4()))
        assert len(gateway.requests) == 2
        gateway = Flaky(failure, ok=httpx.Response(200, json=job_json()))
        client = make(gateway)
        await call(client.submit("echo"))  # keyed: safe
        assert len(gateway.requests) == 2


async def test_client_errors_are_never_retried(make, clock):
    gateway = Flaky(problem(409, "Job is succeeded."), ok=httpx.Response(200, json=job_json()))
    client = make(gateway)
    with pytest.raises(Exception, match="409"):
        await call(client.redrive_job(uuid4()))
    assert len(gateway.requests) == 1
    assert clock.sleeps == []
