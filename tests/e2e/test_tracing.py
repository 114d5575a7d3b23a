"""One trace across the gateway, the relay and the worker (processes, real PG and broker).

The spans are exported by each process to one JSON-lines file (OTEL_TRACES_EXPORTER=
jobline_jsonl); the test rebuilds the tree from them: the client's span, the gateway's
submit, the relay's publish, the worker's run and the handler's own span, each the parent
of the next.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.traced_app import QUEUE
from tests.support import GATEWAY_ENV, RELAY_ENV, WORKER_ENV, Api, wait_for, wait_states

TRACED_APP = "tests.e2e.traced_app:worker"


def _tracing_env(path: Path) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "jobline_jsonl",
        "JOBLINE_OTEL_JSONL_PATH": str(path),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@pytest.fixture
async def traced(stack, make_api_key, tmp_path):
    path = tmp_path / "spans.jsonl"
    env = _tracing_env(path)
    gateway = stack.start("gateway", env={**GATEWAY_ENV, **env})
    stack.start("relay", env={**RELAY_ENV, **env})
    stack.start("worker", "--app", TRACED_APP, "--queues", QUEUE, env={**WORKER_ENV, **env})
    api = Api(gateway.url, await make_api_key())
    yield api, path
    await api.close()


@pytest.mark.parametrize("job_type", ["traced-async", "traced-sync"])
async def test_one_trace_joins_client_gateway_relay_worker_and_handler(traced, db, job_type):
    api, path = traced
    traceparent, trace_id, client_span = _traceparent()
    response = await api.client.post(
        "/v1/jobs",
        json={"type": job_type, "queue": QUEUE, "payload": {}},
        headers={"traceparent": traceparent},
    )
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    await wait_states(db, [job_id], "succeeded", timeout=60)
    step = f"handler-step-{job_type.removeprefix('traced-')}"

    def the_trace() -> dict[str, dict[str, Any]] | None:
        spans = {s["name"]: s for s in _spans(path) if s["trace_id"] == trace_id}
        wanted = {"jobline.submit", "jobline.publish", "jobline.run", step}
        return spans if wanted <= set(spans) else None

    spans = await wait_for(the_trace, timeout=15)
    submit, publish = spans["jobline.submit"], spans["jobline.publish"]
    run, handler = spans["jobline.run"], spans[step]
    assert submit["parent_span_id"] == client_span
    assert publish["parent_span_id"] == submit["span_id"]
    assert run["parent_span_id"] == publish["span_id"]
    assert handler["parent_span_id"] == run["span_id"]
    assert (submit["service"], publish["service"], run["service"]) == (
        "gateway",
        "outbox-relay",
        "worker",
    )
    assert (submit["kind"], publish["kind"], run["kind"]) == ("SERVER", "PRODUCER", "CONSUMER")
    assert publish["attributes"]["jobline.job.id"] == job_id
    assert run["attributes"]["jobline.job.id"] == job_id
    assert run["attributes"]["jobline.outcome"] == "returned"
    assert run["status"] != "ERROR"
    # The handler was handed its run span's context to pass on.
    job = await api.job(job_id)
    assert job["result"]["traceparent"] == f"00-{trace_id}-{run['span_id']}-01"


async def test_with_tracing_off_the_worker_continues_the_callers_context(stack, make_api_key, db):
    gateway = stack.start("gateway", env=GATEWAY_ENV)
    stack.start("relay", env=RELAY_ENV)
    stack.start("worker", "--app", TRACED_APP, "--queues", QUEUE, env=WORKER_ENV)
    api = Api(gateway.url, await make_api_key())
    try:
        traceparent, _, _ = _traceparent()
        response = await api.client.post(
            "/v1/jobs",
            json={"type": "traced-async", "queue": QUEUE, "payload": {}},
            headers={"traceparent": traceparent},
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        await wait_states(db, [job_id], "succeeded", timeout=60)
        assert (await api.job(job_id))["result"]["traceparent"] == traceparent
    finally:
        await api.close()
