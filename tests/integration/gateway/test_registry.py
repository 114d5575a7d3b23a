"""The registry at the gateway: declared queues, registered types, payloads checked at submit.

The gateways here run without ``gateway_accept_undeclared`` (the rest of the suite's use it).
Every test names its own types and queues: the run's database is shared.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from jobline.core.registry import JobTypeRecord
from jobline.pg import registry
from tests.integration.gateway.conftest import GatewayClient, bearer, count_jobs, tenant_of

EMAIL_SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string", "minLength": 1}, "n": {"type": "integer"}},
    "required": ["to"],
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


def problem(response, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def fields(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["field"], e["pointer"]) for e in body["errors"]]


def listen(client: GatewayClient) -> list[str | None]:
    """The registry changes ``client``'s gateway hears from now on (its catalog's NOTIFYs)."""
    heard: list[str | None] = []
    client.catalog.subscribers.append(heard.append)
    return heard


async def hear(heard: list[str | None], table: str) -> None:
    for _ in range(250):
        if table in heard:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no change of {table} was heard")


@pytest.fixture
async def strict(make_client) -> GatewayClient:
    client: GatewayClient = await make_client(gateway_accept_undeclared=False)
    return client


@pytest.fixture
async def operator(make_api_key) -> dict[str, str]:
    return bearer(await make_api_key(scopes="admin"))


async def declare(
    client: GatewayClient,
    operator: dict[str, str],
    name: str,
    queue: str = "default",
    *,
    schema: dict[str, Any] | None = None,
    tenants: list[str] | None = None,
) -> dict[str, Any]:
    if queue != "default":
        response = await client.put(f"/v1/admin/queues/{queue}", json={}, headers=operator)
        assert response.status_code == 200, response.text
    body: dict[str, Any] = {"queue": queue, "payload_schema": schema, "allowed_tenants": tenants}
    response = await client.put(f"/v1/admin/job-types/{name}", json=body, headers=operator)
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


async def test_an_unknown_type_and_an_undeclared_queue_are_422_naming_the_field(
    strict, operator, make_api_key, db
):
    key = await make_api_key(scopes="jobs:write")
    unknown = {"type": unique("nope"), "payload": {}}
    body = problem(await strict.post("/v1/jobs", json=unknown, headers=bearer(key)))
    assert fields(body) == [("type", "/type")]
    assert "unknown job type" in body["errors"][0]["message"]

    job_type = unique("known")
    await declare(strict, operator, job_type)
    elsewhere = {"type": job_type, "payload": {}, "queue": unique("q")}
    body = problem(await strict.post("/v1/jobs", json=elsewhere, headers=bearer(key)))
    assert fields(body) == [("queue", "/queue")]
    assert "is not declared" in body["errors"][0]["message"]
    assert await count_jobs(db, key) == 0


async def test_a_payload_is_checked_against_the_types_schema_with_a_pointer(
    strict, operator, make_api_key
):
    key = await make_api_key(scopes="jobs:write")
    job_type, queue = unique("mail"), unique("mailq")
    await declare(strict, operator, job_type, queue, schema=EMAIL_SCHEMA)
    bad = {"type": job_type, "payload": {"to": "", "n": "7"}}
    body = problem(await strict.post("/v1/jobs", json=bad, headers=bearer(key)))
    assert fields(body) == [("payload.n", "/payload/n"), ("payload.to", "/payload/to")]
    missing = problem(
        await strict.post("/v1/jobs", json={"type": job_type, "payload": {}}, headers=bearer(key))
    )
    assert fields(missing) == [("payload.to", "/payload/to")]

    good = {"type": job_type, "payload": {"to": "ada@example.com"}}
    response = await strict.post("/v1/jobs", json=good, headers=bearer(key))
    assert response.status_code == 201, response.text
    assert response.json()["queue"] == queue  # no queue named: the type's own


async def test_a_batch_names_every_failing_item_and_field_and_accepts_none(
    strict, operator, make_api_key, db
):
    key = await make_api_key(scopes="jobs:write")
    job_type = unique("mail")
    await declare(strict, operator, job_type, schema=EMAIL_SCHEMA)
    jobs = [
        {"type": job_type, "payload": {"to": "a"}},
        {"type": job_type, "payload": {"to": 5}},
        {"type": unique("nope"), "payload": {}},
        {"type": job_type, "payload": {"to": "b"}, "queue": unique("q")},
    ]
    body = problem(await strict.post("/v1/jobs/batch", json={"jobs": jobs}, headers=bearer(key)))
    assert fields(body) == [
        ("jobs.1.payload.to", "/jobs/1/payload/to"),
        ("jobs.2.type", "/jobs/2/type"),
        ("jobs.3.queue", "/jobs/3/queue"),
    ]
    assert await count_jobs(db, key) == 0
    ok = await strict.post("/v1/jobs/batch", json={"jobs": jobs[:1] * 3}, headers=bearer(key))
    assert ok.status_code == 201, ok.text


async def test_a_type_for_other_tenants_answers_like_an_unknown_one_and_is_not_listed(
    strict, operator, make_api_key, db
):
    allowed_key = await make_api_key(scopes="jobs:write,jobs:read")
    other_key = await make_api_key(scopes="jobs:write,jobs:read")
    job_type = unique("private")
    tenant = await tenant_of(db, allowed_key)
    await declare(strict, operator, job_type, schema=EMAIL_SCHEMA, tenants=[tenant])
    job = {"type": job_type, "payload": {"to": "x"}}

    accepted = await strict.post("/v1/jobs", json=job, headers=bearer(allowed_key))
    assert accepted.status_code == 201, accepted.text
    refused = problem(await strict.post("/v1/jobs", json=job, headers=bearer(other_key)))
    unknown = problem(
        await strict.post(
            "/v1/jobs", json={**job, "type": unique("nope")}, headers=bearer(other_key)
        )
    )
    assert fields(refused) == fields(unknown) == [("type", "/type")]

    listed = await strict.get("/v1/job-types", headers=bearer(allowed_key))
    assert listed.status_code == 200, listed.text
    mine = {t["name"]: t for t in listed.json()["job_types"]}
    assert mine[job_type]["payload_schema"] == EMAIL_SCHEMA
    assert mine[job_type]["source"] == "operator"
    assert "allowed_tenants" not in mine[job_type]  # other tenants' names are not shown
    others = (await strict.get("/v1/job-types", headers=bearer(other_key))).json()
    assert job_type not in {t["name"] for t in others["job_types"]}


async def test_submissions_are_checked_from_memory_and_a_miss_reads_once(
    strict, operator, make_api_key, db
):
    key = await make_api_key(scopes="jobs:write")
    job_type = unique("cached")
    heard = listen(strict)
    await declare(strict, operator, job_type)
    await hear(heard, "job_types")  # the declaration's own NOTIFY arrives a moment later
    cache = strict.app.state.registry
    await cache.get()
    reads = cache.reads
    for _ in range(20):
        response = await strict.post(
            "/v1/jobs", json={"type": job_type, "payload": {}}, headers=bearer(key)
        )
        assert response.status_code == 201, response.text
    assert cache.reads == reads  # no registry read on the submit path

    # A notification this gateway never hears (it stops listening to registry changes): the
    # type registered meanwhile is still accepted, after exactly one fresh read.
    strict.catalog.subscribers.remove(cache.changed)
    late = unique("late")
    async with db.transaction() as conn:
        await registry.register_job_types(
            conn, [JobTypeRecord(late, "default")], source="worker", registered_by="test"
        )
    response = await strict.post(
        "/v1/jobs", json={"type": late, "payload": {}}, headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    assert cache.reads == reads + 1
    # ... and an unknown type costs one read each, never more.
    problem(
        await strict.post(
            "/v1/jobs", json={"type": unique("x"), "payload": {}}, headers=bearer(key)
        )
    )
    assert cache.reads == reads + 2


async def test_a_registry_change_is_heard_by_every_gateway(
    strict, make_client, operator, make_api_key
):
    other = await make_client(gateway_accept_undeclared=False)
    key = await make_api_key(scopes="jobs:write")
    job_type = unique("heard")
    await other.app.state.registry.get()
    heard = listen(other)
    await declare(strict, operator, job_type, schema=EMAIL_SCHEMA)
    await hear(heard, "job_types")
    assert other.app.state.registry._current is None  # the NOTIFY dropped its copy
    body = problem(
        await other.post("/v1/jobs", json={"type": job_type, "payload": {}}, headers=bearer(key))
    )
    assert fields(body) == [("payload.to", "/payload/to")]


async def test_operators_declare_queues_and_types(strict, operator, make_api_key):
    queue = unique("ops")
    declared = await strict.put(
        f"/v1/admin/queues/{queue}", json={"partitions": 3}, headers=operator
    )
    assert declared.status_code == 200, declared.text
    assert (declared.json()["partitions"], declared.json()["declared_by"]) == (3, "operator")
    listed = (await strict.get("/v1/admin/queues", headers=operator)).json()["queues"]
    assert {"default", queue} <= {q["name"] for q in listed}

    reserved = problem(await strict.put("/v1/admin/queues/dlq", json={}, headers=operator))
    assert [(e["field"], e["location"]) for e in reserved["errors"]] == [("name", "path")]
    bad_queue = {"queue": unique("nowhere")}
    body = problem(
        await strict.put(f"/v1/admin/job-types/{unique('t')}", json=bad_queue, headers=operator)
    )
    assert fields(body) == [("queue", "/queue")]
    bad_schema = {"payload_schema": {"type": "nope"}}
    body = problem(
        await strict.put(f"/v1/admin/job-types/{unique('t')}", json=bad_schema, headers=operator)
    )
    assert fields(body) == [("payload_schema", "/payload_schema")]

    job_type = f"{unique('ns')}/with.dots:and-slashes"
    out = await declare(strict, operator, job_type, queue, tenants=["acme"])
    assert (out["name"], out["queue"], out["allowed_tenants"]) == (job_type, queue, ["acme"])
    everything = (await strict.get("/v1/admin/job-types", headers=operator)).json()
    assert job_type in {t["name"] for t in everything["job_types"]}

    tenant_key = bearer(await make_api_key(scopes="jobs:write,jobs:read"))
    problem(await strict.put(f"/v1/admin/queues/{queue}", json={}, headers=tenant_key), 403)
    problem(await strict.get("/v1/admin/job-types", headers=tenant_key), 403)


async def test_a_schedules_job_must_pass_the_registry_too(strict, make_api_key):
    key = await make_api_key()
    body = {
        "name": unique("s"),
        "cron": "30 2 1 1 *",
        "job": {"type": unique("nope"), "payload": {}},
    }
    assert fields(problem(await strict.post("/v1/schedules", json=body, headers=bearer(key)))) == [
        ("job.type", "/job/type")
    ]
