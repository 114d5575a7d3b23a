"""Submitting: one transaction with the outbox, defaults and policies, validation, limits."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from jobline.core.envelope import WorkEnvelope
from jobline.pg.db import Database
from tests.integration.gateway.conftest import bearer, count_jobs, job_body, tenant_of


async def outbox_of(db: Database, job_id: str) -> list[tuple[str, bytes, datetime]]:
    """A job's outbox messages in order: (topic, value, available_at), one per message."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT topics, payloads, available_at FROM outbox WHERE job_id = $1 ORDER BY id",
            UUID(job_id),
        )
    return [
        (topic, bytes(value), r["available_at"])
        for r in rows
        for topic, value in zip(r["topics"], r["payloads"], strict=True)
    ]


async def set_policy(db: Database, tenant: str, job_type: str, **fields: Any) -> None:
    """The tenant's stored policy for ``job_type`` (as the analyzer writes it)."""
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO job_type_policies (tenant_id, type, max_attempts, backoff, source)"
            " VALUES ($1, $2, $3, $4, 'analyzer')",
            tenant,
            job_type,
            fields.get("max_attempts"),
            fields.get("backoff"),
        )


def problem(response, status: int = 422):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


async def test_a_submission_writes_the_job_and_its_outbox_rows(client, make_api_key, db):
    key = await make_api_key(scopes="jobs:write,jobs:read")
    response = await client.post(
        "/v1/jobs",
        json=job_body(queue="mail", priority=5, metadata={"source": "signup"}),
        headers={**bearer(key), "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert response.headers["location"] == job["links"]["self"] == f"/v1/jobs/{job['id']}"
    messages = await outbox_of(db, job["id"])
    assert [topic for topic, _, _ in messages] == ["events", "jobs.mail.p5"]  # priority 5: its lane
    envelope = WorkEnvelope.decode(messages[1][1])
    assert envelope.payload == {"to": "a@example.com"}
    assert envelope.traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    fetched = await client.get(job["links"]["self"], headers=bearer(key))
    assert fetched.json() == job


async def test_a_delayed_job_is_scheduled_and_its_message_waits(client, make_api_key, db):
    key = await make_api_key()
    before = datetime.now(UTC)
    delayed = await client.post("/v1/jobs", json=job_body(delay_seconds=60), headers=bearer(key))
    job = delayed.json()
    assert job["status"] == "scheduled"
    due = datetime.fromisoformat(job["timings"]["scheduled_for"])
    assert before + timedelta(seconds=59) < due < before + timedelta(seconds=62)
    (event, work) = await outbox_of(db, job["id"])
    assert (event[0], work[0]) == ("events", "jobs.default")
    assert event[2] < due  # the "scheduled" event goes out now
    assert work[2] == due
    run_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    at = await client.post(
        "/v1/jobs", json=job_body(run_at=run_at.isoformat()), headers=bearer(key)
    )
    assert datetime.fromisoformat(at.json()["timings"]["scheduled_for"]) == run_at


async def test_defaults_come_from_the_tenant_policy_then_the_platform(
    make_client, make_api_key, db
):
    client = await make_client(job_default_max_attempts=7, job_default_timeout_seconds=42)
    key = await make_api_key()
    tenant = await tenant_of(db, key)
    await set_policy(
        db,
        tenant,
        "tuned",
        max_attempts=3,
        backoff={"kind": "fixed", "base_seconds": 9, "max_seconds": 9},
    )
    plain = (await client.post("/v1/jobs", json=job_body(), headers=bearer(key))).json()
    assert plain["max_attempts"] == 7
    assert plain["timeout_seconds"] == 42
    assert plain["backoff"]["kind"] == "exponential_jitter"
    tuned = (await client.post("/v1/jobs", json=job_body(type="tuned"), headers=bearer(key))).json()
    assert tuned["max_attempts"] == 3
    assert tuned["backoff"] == {"kind": "fixed", "base_seconds": 9.0, "max_seconds": 9.0}
    explicit = await client.post(
        "/v1/jobs",
        json=job_body(type="tuned", max_attempts=1, backoff={"kind": "exponential"}),
        headers=bearer(key),
    )
    assert explicit.json()["max_attempts"] == 1
    assert explicit.json()["backoff"]["kind"] == "exponential"


async def test_a_partial_backoff_takes_the_rest_from_the_policy_then_the_defaults(
    make_client, make_api_key, db
):
    client = await make_client(
        job_default_backoff_kind="fixed",
        job_default_backoff_base_seconds=5,
        job_default_backoff_max_seconds=100,
    )
    key = await make_api_key()
    tenant = await tenant_of(db, key)
    await set_policy(
        db, tenant, "tuned", backoff={"kind": "exponential", "base_seconds": 2, "max_seconds": 10}
    )
    partial = job_body(backoff={"max_seconds": 60})
    plain = await client.post("/v1/jobs", json=partial, headers=bearer(key))
    assert plain.status_code == 201, plain.text
    # No policy for the type: kind and base from JOBLINE_JOB_DEFAULT_*.
    assert plain.json()["backoff"] == {"kind": "fixed", "base_seconds": 5.0, "max_seconds": 60.0}
    tuned = await client.post("/v1/jobs", json={**partial, "type": "tuned"}, headers=bearer(key))
    assert tuned.status_code == 201, tuned.text
    expected = {"kind": "exponential", "base_seconds": 2.0, "max_seconds": 60.0}
    assert tuned.json()["backoff"] == expected
    async with db.connection() as conn:  # and that is what the worker will read
        stored = await conn.fetchval(
            "SELECT backoff FROM jobs WHERE id = $1", UUID(tuned.json()["id"])
        )
    assert {k: stored[k] for k in expected} == expected
    kind_only = await client.post(
        "/v1/jobs", json=job_body(type="tuned", backoff={"kind": "fixed"}), headers=bearer(key)
    )
    assert kind_only.json()["backoff"] == {
        "kind": "fixed",
        "base_seconds": 2.0,
        "max_seconds": 10.0,
    }


async def test_a_partial_backoff_contradicting_the_inherited_one_is_422(
    make_client, make_api_key, db
):
    client = await make_client(
        job_default_backoff_base_seconds=90, job_default_backoff_max_seconds=600
    )
    key = await make_api_key()
    tenant = await tenant_of(db, key)
    await set_policy(
        db, tenant, "slow", backoff={"kind": "fixed", "base_seconds": 120, "max_seconds": 600}
    )
    partial = {"max_seconds": 60}
    # Below the platform default's base, and below the tenant policy's base.
    for body in (job_body(backoff=partial), job_body(type="slow", backoff=partial)):
        error = problem(await client.post("/v1/jobs", json=body, headers=bearer(key)))
        assert error["errors"][0]["field"] == "backoff"
        assert error["errors"][0]["pointer"] == "/backoff"
        assert "backoff" in error["detail"]
    batch = {"jobs": [job_body(), job_body(type="slow", backoff=partial)]}
    error = problem(await client.post("/v1/jobs/batch", json=batch, headers=bearer(key)))
    assert [(e["field"], e["pointer"]) for e in error["errors"]] == [
        ("jobs.1.backoff", "/jobs/1/backoff")
    ]
    assert await count_jobs(db, key) == 0
    # A base that lifts the inherited cap is consistent, not a contradiction.
    fine = await client.post(
        "/v1/jobs", json=job_body(type="slow", backoff={"base_seconds": 700}), headers=bearer(key)
    )
    assert fine.status_code == 201, fine.text
    assert fine.json()["backoff"]["max_seconds"] == 700.0


async def test_a_changed_policy_reaches_the_gateway_without_a_restart(client, make_api_key, db):
    """The catalog caches "no policy" for a type too; the change's NOTIFY drops that."""
    key = await make_api_key()
    tenant = await tenant_of(db, key)
    first = await client.post("/v1/jobs", json=job_body(type="late"), headers=bearer(key))
    assert first.json()["max_attempts"] == 5  # the platform default
    await set_policy(db, tenant, "late", max_attempts=2)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        again = await client.post("/v1/jobs", json=job_body(type="late"), headers=bearer(key))
        if again.json()["max_attempts"] == 2:
            break
        assert asyncio.get_running_loop().time() < deadline, "the policy change was not heard"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("body", "field", "pointer"),
    [
        (job_body(colour="red"), "colour", "/colour"),
        (job_body(payload=[1, 2]), "payload", "/payload"),
        (job_body(payload={"a": {"b": ["ok", "bad\u0000"]}}), "payload", "/payload"),
        (job_body(payload={"k\u0000": 1}), "payload", "/payload"),
        (job_body(metadata={"x": "\u0000"}), "metadata", "/metadata"),
        (job_body(payload={"n": [1, 2**64]}), "payload", "/payload"),
        (job_body(metadata={"n": -(2**63) - 1}), "metadata", "/metadata"),
        (job_body(type="bad type"), "type", "/type"),
        (job_body(queue="dlq"), "queue", "/queue"),
        (job_body(queue="Upper"), "queue", "/queue"),
        (job_body(priority=10**6), "priority", "/priority"),
        (job_body(priority=10), "priority", "/priority"),
        (job_body(priority=-1), "priority", "/priority"),
        (job_body(max_attempts=0), "max_attempts", "/max_attempts"),
        (job_body(max_attempts="three"), "max_attempts", "/max_attempts"),
        (job_body(timeout_seconds=0), "timeout_seconds", "/timeout_seconds"),
        (job_body(delay_seconds=-1), "delay_seconds", "/delay_seconds"),
        (job_body(run_at="2030-01-01T00:00:00"), "run_at", "/run_at"),  # no time zone
        (
            job_body(backoff={"kind": "fixed", "base_seconds": 5, "max_seconds": 1}),
            "backoff",
            "/backoff",
        ),
        (job_body(backoff={"kind": "linear"}), "backoff.kind", "/backoff/kind"),
        ({"payload": {}}, "type", "/type"),
        (job_body(payload={"deep": json.loads("[" * 40 + "]" * 40)}), "payload", "/payload"),
    ],
)
async def test_invalid_submissions_are_422_naming_the_field(
    client, make_api_key, body, field, pointer
):
    key = await make_api_key()
    error = problem(await client.post("/v1/jobs", json=body, headers=bearer(key)))
    assert error["errors"][0]["field"] == field
    assert error["errors"][0]["pointer"] == pointer
    assert field.split(".")[0] in error["detail"]


async def test_64_bit_integers_are_accepted_and_stored_exactly(client, make_api_key):
    key = await make_api_key()
    payload = {"big": 2**63 - 1, "small": -(2**63)}
    created = await client.post("/v1/jobs", json=job_body(payload=payload), headers=bearer(key))
    assert created.status_code == 201, created.text
    fetched = await client.get(created.json()["links"]["self"], headers=bearer(key))
    assert fetched.json()["payload"] == payload


async def test_nul_inside_the_payload_is_located_in_the_message(client, make_api_key):
    key = await make_api_key()
    body = job_body(payload={"a": {"b": ["ok", "bad\u0000"]}})
    error = problem(await client.post("/v1/jobs", json=body, headers=bearer(key)))
    assert "/a/b/1" in error["errors"][0]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "x", "payload": {',
        b'{"type": "x", "payload": {"n": NaN}}',
        b"\xff\xfe",
        b"[" * 5000 + b"]" * 5000,
    ],
    ids=["truncated", "nan", "not-utf8", "deep"],
)
async def test_malformed_json_is_422(client, make_api_key, raw):
    key = await make_api_key()
    response = await client.post(
        "/v1/jobs", content=raw, headers={**bearer(key), "content-type": "application/json"}
    )
    assert problem(response)["errors"][0]["location"] == "body"


async def test_bodies_over_the_limit_are_413_by_header_and_by_bytes(make_client, make_api_key):
    client = await make_client(gateway_body_limit_bytes=2048)
    key = await make_api_key()
    big = json.dumps(job_body(payload={"blob": "x" * 4000})).encode()
    declared = await client.post(
        "/v1/jobs", content=big, headers={**bearer(key), "content-type": "application/json"}
    )
    problem(declared, 413)

    async def chunks():  # no Content-Length: only counting the bytes can catch it
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    streamed = await client.post(
        "/v1/jobs", content=chunks(), headers={**bearer(key), "content-type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    problem(streamed, 413)
    small = await client.post("/v1/jobs", json=job_body(), headers=bearer(key))
    assert small.status_code == 201


async def test_a_batch_of_1000_commits_together(client, make_api_key, db):
    key = await make_api_key()
    jobs = [job_body(payload={"n": i}) for i in range(1000)]
    response = await client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=bearer(key))
    assert response.status_code == 201, response.text[:500]
    results = response.json()["jobs"]
    assert [r["payload"]["n"] for r in results] == list(range(1000))
    assert len({r["id"] for r in results}) == 1000
    assert await count_jobs(db, key) == 1000
    too_many = await client.post(
        "/v1/jobs/batch", json={"jobs": [*jobs, job_body()]}, headers=bearer(key)
    )
    assert problem(too_many)["errors"][0]["pointer"] == "/jobs"


async def test_one_bad_item_rejects_the_whole_batch_and_points_at_it(client, make_api_key, db):
    key = await make_api_key()
    jobs = [job_body(payload={"n": i}) for i in range(40)]
    jobs[17]["payload"] = {"text": "a\u0000b"}
    error = problem(await client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=bearer(key)))
    assert [e["pointer"] for e in error["errors"]] == ["/jobs/17/payload"]
    assert error["errors"][0]["field"] == "jobs.17.payload"
    assert await count_jobs(db, key) == 0


async def test_the_rate_limit_answers_429_with_retry_after(make_client, make_api_key):
    client = await make_client(gateway_rate_limit_per_second=0.5, gateway_rate_limit_burst=3)
    key, other = await make_api_key(), await make_api_key()
    statuses = [(await client.get("/v1/jobs", headers=bearer(key))).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = await client.get("/v1/jobs", headers=bearer(key))
    problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    # Buckets are per key.
    assert (await client.get("/v1/jobs", headers=bearer(other))).status_code == 200


async def test_metrics_count_requests_by_route_and_submissions_by_type(client, make_api_key):
    key = await make_api_key()
    await client.post("/v1/jobs", json=job_body(type="metrics.probe"), headers=bearer(key))
    await client.get("/v1/jobs/00000000-0000-4000-8000-000000000000", headers=bearer(key))
    text_ = (await client.get("/metrics")).text
    assert 'jobline_gateway_jobs_submitted_total{type="metrics.probe"} 1.0' in text_
    assert 'route="/v1/jobs/{job_id}",status="404"' in text_
    assert 'jobline_gateway_submit_seconds_count{endpoint="single"}' in text_


async def test_unknown_paths_and_methods_are_problems(client):
    problem(await client.get("/v1/nothing"), 404)
    problem(await client.put("/v1/jobs"), 405)


async def test_openapi_documents_each_routes_statuses_as_problems(client):
    spec = (await client.get("/openapi.json")).json()
    cancel = spec["paths"]["/v1/jobs/{job_id}/cancel"]["post"]
    assert {"200", "401", "403", "404", "409", "413", "422", "429"} <= set(cancel["responses"])
    assert "application/problem+json" in cancel["responses"]["409"]["content"]
    submit = spec["paths"]["/v1/jobs"]["post"]
    assert {"200", "201"} <= set(submit["responses"])
    for path in spec["paths"].values():
        for operation in path.values():
            assert operation.get("description"), operation["operationId"]


@pytest.mark.parametrize(
    ("path", "field", "message"),
    [
        ("/v1/jobs?limt=5", "limt", "unknown parameter"),
        ("/v1/jobs?type=a&type=b", "type", "given more than once"),
        ("/v1/schedules?name=a&name=b", "name", "given more than once"),
        ("/v1/admin/keys?tennant=x", "tennant", "unknown parameter"),
    ],
)
async def test_unknown_or_repeated_query_parameters_are_422(
    client, make_api_key, path, field, message
):
    key = await make_api_key()
    response = await client.get(path, headers=bearer(key))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": field, "location": "query", "message": message}]
