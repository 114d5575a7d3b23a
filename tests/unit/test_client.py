"""The client against a fake gateway (httpx.MockTransport): the same tests run on the sync
Client and the AsyncClient, so the two keep one behaviour."""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from jobline.api import JobOut, JobState
from jobline.client import (
    AsyncClient,
    BatchIncomplete,
    Client,
    ConfigurationError,
    GatewayError,
    GatewayUnreachable,
    InvalidRequest,
    NotFound,
    RetryPolicy,
    RouteNotServed,
    WaitTimeout,
    api_key,
    gateway_url,
)

NOW = "2030-01-01T00:00:00Z"
FAST = RetryPolicy(max_attempts=4, base_delay_seconds=0.01, max_delay_seconds=0.05)


def job_json(job_id: str | None = None, status: str = "queued", **changes: Any) -> dict[str, Any]:
    job_id = job_id or str(uuid4())
    base = f"/v1/jobs/{job_id}"
    job = {
        "id": job_id,
        "type": "echo",
        "queue": "default",
        "status": status,
        "priority": 0,
        "payload": {},
        "metadata": {},
        "attempt": 0,
        "max_attempts": 5,
        "attempts_left": 5,
        "backoff": {"kind": "exponential_jitter", "base_seconds": 1.0, "max_seconds": 300.0},
        "timeout_seconds": 300.0,
        "timings": {
            "created_at": NOW,
            "scheduled_for": NOW,
            "started_at": None,
            "finished_at": None,
        },
        "cancel_requested_at": None,
        "last_error": None,
        "result": None,
        "links": {
            "self": base,
            "attempts": f"{base}/attempts",
            "cancel": f"{base}/cancel",
            "redrive": f"{base}/redrive",
        },
    }
    job.update(changes)
    return job


def problem(status: int, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": "urn:jobline:problem:x", "title": "t", "status": status, "detail": detail}
    return httpx.Response(
        status, json={**body, **extra}, headers={"content-type": "application/problem+json"}
    )


class FakeClock:
    """Monotonic time that only the client's sleeps advance."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(params=["sync", "async"])
def kind(request) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(kind, clock):
    """``make(handler, **options)``: a Client or AsyncClient over the handler."""
    made: list[Any] = []

    def build(handler: Handler, **options: Any) -> Any:
        common = {
            "transport": httpx.MockTransport(handler),
            "retry": options.pop("retry", FAST),
            "clock": clock,
            "rng": random.Random(7),
            **options,
        }
        if kind == "sync":
            client: Any = Client("http://gw", "jl_key", sleep=clock.sleep, **common)
        else:
            client = AsyncClient("http://gw", "jl_key", sleep=clock.asleep, **common)
        made.append(client)
        return client

    return build


async def call(result: Any) -> Any:
    """The value of a client call, awaited when the client is async."""
    return await result if inspect.isawaitable(result) else result


async def collect(items: Iterator[Any] | AsyncIterator[Any]) -> list[Any]:
    if isinstance(items, Iterator):
        return list(items)
    return [item async for item in items]


# --- configuration ------------------------------------------------------------------------


def test_gateway_url_and_key_come_from_the_environment(tmp_path):
    assert gateway_url({}) == "http://127.0.0.1:8000"
    assert gateway_url({"JOBLINE_GATEWAY_PORT": "9001"}) == "http://127.0.0.1:9001"
    assert gateway_url({"JOBLINE_GATEWAY_URL": "https://jobs.example/"}) == "https://jobs.example"
    assert api_key({"JOBLINE_API_KEY": " jl_x \n"}) == "jl_x"
    (tmp_path / "dev-api-key").write_text("jl_dev\n")
    assert api_key({"JOBLINE_DATA_DIR": str(tmp_path)}) == "jl_dev"
    with pytest.raises(ConfigurationError, match="JOBLINE_API_KEY"):
        api_key({"JOBLINE_DATA_DIR": str(tmp_path / "none")})


# --- requests and answers -----------------------------------------------------------------


async def test_submit_sends_the_job_and_returns_the_typed_answer(make):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        return httpx.Response(201, json=job_json(queue=body["queue"], payload=body["payload"]))

    client = make(handler)
    when = datetime(2031, 5, 1, 12, tzinfo=UTC)
    job = await call(client.submit("echo", {"n": 1}, queue="emails", run_at=when, priority=3))
    assert isinstance(job, JobOut)
    assert job.status is JobState.QUEUED
    assert job.queue == "emails"
    assert job["status"] == "queued"  # answers read like the JSON too
    [request] = seen
    assert request.method == "POST"
    assert request.url.path == "/v1/jobs"
    assert request.headers["authorization"] == "Bearer jl_key"
    assert json.loads(request.content) == {
        "type": "echo",
        "payload": {"n": 1},
        "queue": "emails",
        "priority": 3,
        "run_at": "2031-05-01T12:00:00+00:00",
    }


async def test_each_submission_carries_its_own_idempotency_key_and_an_explicit_key_wins(make):
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return httpx.Response(201, json=job_json())

    client = make(handler)
    await call(client.submit("echo"))
    await call(client.submit("echo"))
    await call(client.submit("echo", idempotency_key="order-42"))
    assert len(set(keys[:2])) == 2
    assert all(UUID(k).version == 4 for k in keys[:2])
    assert keys[2] == "order-42"


async def test_a_problem_becomes_a_typed_error_naming_the_fields(make):
    def handler(request: httpx.Request) -> httpx.Response:
        errors = [{"field": "cron", "location": "body", "message": "bad"}]
        return problem(422, "invalid cron expression '61 * * * *': bad minute", errors=errors)

    client = make(handler)
    with pytest.raises(InvalidRequest) as caught:
        await call(client.create_schedule({"name": "x", "cron": "61 * * * *"}))
    assert caught.value.status == 422
    assert [e.field for e in caught.value.problem.errors or []] == ["cron"]
    assert "bad minute" in str(caught.value)
    assert "(cron)" in str(caught.value)
    assert isinstance(caught.value, GatewayError)


async def test_lists_follow_the_cursor_lazily(make):
    pages = {
        None: (["a", "b"], "c2"),
        "c2": (["c"], None),
    }
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        asked.append(cursor)
        assert request.url.params["status"] == "dead"
        assert request.url.params["limit"] == "2"
        ids, following = pages[cursor]
        jobs = [job_json(str(UUID(int=ord(i))), "dead") for i in ids]
        return httpx.Response(200, json={"jobs": jobs, "next_cursor": following})

    client = make(handler)
    found = await collect(client.iter_dead_jobs(page_size=2))
    assert [j.id.int for j in found] == [ord("a"), ord("b"), ord("c")]
    assert asked == [None, "c2"]
    page = await call(client.list_jobs(status=JobState.DEAD, limit=2))
    assert page.next_cursor == "c2"


async def test_find_schedule_by_name_and_a_missing_one(make):
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["name"] == "nightly"
        return httpx.Response(200, json={"schedules": [], "next_cursor": None})

    client = make(handler)
    with pytest.raises(NotFound, match="no schedule named 'nightly'"):
        await call(client.find_schedule("nightly"))


async def test_a_route_the_gateway_does_not_serve_is_named_as_such(make):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs/00000000-0000-4000-8000-000000000000":
            return problem(404, "No job 00000000-0000-4000-8000-000000000000.")
        return problem(404, "Not Found")  # Starlette's answer for a path no route declares

    client = make(handler)
    for missing in (client.queues, client.stats, client.dlq_groups, client.list_own_keys):
        with pytest.raises(RouteNotServed, match="does not serve GET /v1/"):
            await call(missing())
    with pytest.raises(RouteNotServed, match=r"DELETE /v1/keys/\{id\}"):
        await call(client.revoke_own_key(uuid4()))
    with pytest.raises(NotFound) as caught:
        await call(client.get_job("00000000-0000-4000-8000-000000000000"))
    assert not isinstance(caught.value, RouteNotServed)


async def test_an_answer_that_is_not_the_model_is_a_clear_error(make):
    client = make(lambda request: httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(GatewayError, match="not a JobOut"):
        await call(client.get_job(uuid4()))


# --- batches ------------------------------------------------------------------------------


class BatchGateway:
    """Accepts batches with Idempotency-Key replay; can fail one request on purpose."""

    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, int]] = []
        self.fail_next_new_key_at: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["idempotency-key"]
        jobs = json.loads(request.content)["jobs"]
        self.requests.append((key, len(jobs)))
        if key in self.answers:
            return httpx.Response(200, json=self.answers[key])
        if self.fail_next_new_key_at == len(self.answers):
            self.fail_next_new_key_at = None
            return problem(422, "The request is invalid: jobs.3.type.")
        answer = {"jobs": [job_json(payload=j["payload"]) for j in jobs]}
        self.answers[key] = answer
        return httpx.Response(201, json=answer)


async def test_a_large_batch_is_chunked_and_a_failed_chunk_resumes_with_the_same_key(make):
    gateway = BatchGateway()
    gateway.fail_next_new_key_at = 2  # the third chunk fails once
    client = make(gateway)
    specs = [{"type": "echo", "payload": {"i": i}} for i in range(2500)]
    with pytest.raises(BatchIncomplete) as caught:
        await call(client.submit_batch(specs, idempotency_key="import-7"))
    assert len(caught.value.accepted) == 2000
    assert caught.value.idempotency_key == "import-7"
    assert [n for _, n in gateway.requests] == [1000, 1000, 500]

    jobs = await call(client.submit_batch(specs, idempotency_key="import-7"))
    assert [j.payload["i"] for j in jobs] == list(range(2500))
    assert [k for k, _ in gateway.requests[3:]] == ["import-7:0", "import-7:1", "import-7:2"]
    assert len(gateway.answers) == 3  # the first two chunks were replayed, not resubmitted


async def test_a_small_batch_uses_the_key_itself_and_bad_chunk_sizes_are_refused(make):
    gateway = BatchGateway()
    client = make(gateway)
    await call(client.submit_batch([{"type": "echo", "payload": {}}], idempotency_key="k1"))
    assert gateway.requests == [("k1", 1)]
    with pytest.raises(ValueError, match="chunk size"):
        await call(client.submit_batch([], chunk_size=1001))


# --- wait and events ----------------------------------------------------------------------


def scripted(states: list[dict[str, Any]]) -> Handler:
    """GET /v1/jobs/{id} answers each of ``states`` in turn, then the last one forever."""
    job_id = str(uuid4())
    reads = iter(states)
    last: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal last
        assert request.url.path == f"/v1/jobs/{job_id}"
        last = next(reads, last)
        return httpx.Response(200, json=job_json(job_id, **last))

    handler.job_id = job_id  # type: ignore[attr-defined]
    return handler


async def test_job_events_report_state_attempt_and_progress_changes_until_terminal(make, clock):
    handler = scripted(
        [
            {"status": "queued"},
            {"status": "queued"},
            {"status": "running", "attempt": 1},
            {"status": "running", "attempt": 1, "metadata": {"progress": {"fraction": 0.5}}},
            {"status": "running", "attempt": 2, "metadata": {"progress": {"fraction": 0.5}}},
            {"status": "succeeded", "attempt": 2, "result": {"ok": True}},
        ]
    )
    client = make(handler)
    events = await collect(client.job_events(handler.job_id))  # type: ignore[attr-defined]
    assert [(e.kind, e.status.value) for e in events] == [
        ("snapshot", "queued"),
        ("state", "running"),
        ("progress", "running"),
        ("attempt", "running"),
        ("state", "succeeded"),
    ]
    assert events[2].progress is not None
    assert events[2].progress.fraction == 0.5
    assert events[-1].previous_status is JobState.RUNNING
    assert events[-1].terminal
    # Polls slow down while nothing changes and start fast again after a change.
    assert clock.sleeps[0] == pytest.approx(0.1)
    assert clock.sleeps[1] == pytest.approx(0.15)
    assert clock.sleeps[2] == pytest.approx(0.1)


async def test_wait_returns_the_finished_job_or_times_out(make, clock):
    done = scripted([{"status": "running"}, {"status": "dead", "attempt": 5}])
    client = make(done)
    job = await call(client.wait(done.job_id))  # type: ignore[attr-defined]
    assert job.status is JobState.DEAD

    stuck = scripted([{"status": "running"}])
    client = make(stuck)
    with pytest.raises(WaitTimeout, match="still running after 3") as caught:
        await call(client.wait(stuck.job_id, timeout=3))  # type: ignore[attr-defined]
    assert caught.value.job.status is JobState.RUNNING
    assert sum(clock.sleeps) == pytest.approx(3 + 0.1 + 0.15, abs=0.5)


# --- one surface --------------------------------------------------------------------------


def _public(cls: type) -> dict[str, inspect.Signature]:
    # Across the bases too: each client is put together from a mixin per resource.
    return {
        name: inspect.signature(member)
        for base in reversed(cls.__mro__)
        for name, member in vars(base).items()
        if callable(member) and not name.startswith("_")
    }


def test_client_and_async_client_have_the_same_methods_and_parameters():
    sync, aio = _public(Client), _public(AsyncClient)
    assert sync.keys() == aio.keys()
    for name, signature in sync.items():
        assert list(signature.parameters) == list(aio[name].parameters), name
        for param, spec in signature.parameters.items():
            if param in ("sleep", "transport"):
                continue  # sync vs async callables
            assert spec.default == aio[name].parameters[param].default, (name, param)


async def test_unreachable_gateway_is_one_clear_error_after_retries(make, clock):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = make(down)
    with pytest.raises(GatewayUnreachable, match="unreachable after 4 tries") as caught:
        await call(client.get_job(uuid4()))
    assert caught.value.attempts == 4
    assert len(clock.sleeps) == 3
