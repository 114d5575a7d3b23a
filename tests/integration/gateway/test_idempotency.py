"""Idempotency-Key: replays, mismatches, expiry, and the 50-way race on one key."""

from __future__ import annotations

import asyncio

import httpx

from jobline.pg.db import Database
from tests.integration.gateway.conftest import bearer, count_jobs, job_body, tenant_of

REPLAYED = "idempotent-replayed"


async def expire_keys(db: Database, tenant: str) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
            " WHERE tenant_id = $1",
            tenant,
        )


async def test_same_key_and_body_replays_the_original_job(client, make_api_key, db):
    key = await make_api_key()
    headers = {**bearer(key), "Idempotency-Key": "order-1"}
    first = await client.post("/v1/jobs", json=job_body(), headers=headers)
    # Key order and whitespace do not make a different body.
    again = await client.post(
        "/v1/jobs",
        content=b'{ "payload": {"to": "a@example.com"},   "type": "email.send" }',
        headers={**headers, "content-type": "application/json"},
    )
    assert first.status_code == 201
    assert REPLAYED not in first.headers
    assert again.status_code == 200
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()
    assert await count_jobs(db, key) == 1


async def test_same_key_with_another_body_is_422(client, make_api_key, db):
    key = await make_api_key()
    headers = {**bearer(key), "Idempotency-Key": "order-2"}
    assert (await client.post("/v1/jobs", json=job_body(), headers=headers)).status_code == 201
    other = await client.post("/v1/jobs", json=job_body(priority=9), headers=headers)
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    # The same key on the batch route is another request too.
    batch = await client.post("/v1/jobs/batch", json={"jobs": [job_body()]}, headers=headers)
    assert batch.status_code == 422
    assert await count_jobs(db, key) == 1


def assert_one_job_and_49_replays(responses: list[httpx.Response]) -> None:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 49 + [201], statuses
    assert sum(r.headers.get(REPLAYED) == "true" for r in responses) == 49
    assert len({r.json()["id"] for r in responses}) == 1
    assert all(r.json() == responses[0].json() for r in responses)  # the original answer


async def test_fifty_concurrent_submissions_with_one_key_make_one_job(client, make_api_key, db):
    key = await make_api_key()
    headers = {**bearer(key), "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post("/v1/jobs", json=job_body(), headers=headers) for _ in range(50))
    )
    assert_one_job_and_49_replays(responses)
    assert await count_jobs(db, key) == 1
    assert await count_jobs(db, key, idempotency_key="burst") == 1


async def test_fifty_concurrent_submissions_to_a_gateway_process_make_one_job(
    stack, make_api_key, db
):
    """The same race over real HTTP connections, against the gateway as deployed (its pool
    smaller than the burst, so requests also queue for connections)."""
    gateway = stack.start("gateway")
    key = await make_api_key()
    headers = {**bearer(key), "Idempotency-Key": "burst-http"}
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=limits) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/jobs", json=job_body(), headers=headers) for _ in range(50))
        )
    assert_one_job_and_49_replays(list(responses))
    assert await count_jobs(db, key) == 1
    assert await count_jobs(db, key, idempotency_key="burst-http") == 1


async def test_a_batch_replays_all_its_jobs(client, make_api_key, db):
    key = await make_api_key()
    headers = {**bearer(key), "Idempotency-Key": "batch-1"}
    body = {"jobs": [job_body(payload={"n": i}) for i in range(5)]}
    first = await client.post("/v1/jobs/batch", json=body, headers=headers)
    again = await client.post("/v1/jobs/batch", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    assert await count_jobs(db, key) == 5


async def test_an_expired_key_may_be_reused(client, make_api_key, db):
    key = await make_api_key()
    headers = {**bearer(key), "Idempotency-Key": "daily"}
    first = await client.post("/v1/jobs", json=job_body(), headers=headers)
    tenant = await tenant_of(db, key)
    await expire_keys(db, tenant)
    # Even with a different body: the old answer is forgotten.
    second = await client.post("/v1/jobs", json=job_body(priority=1), headers=headers)
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    third = await client.post("/v1/jobs", json=job_body(priority=1), headers=headers)
    assert third.status_code == 200
    assert third.json()["id"] == second.json()["id"]


async def test_retention_comes_from_settings_and_expired_keys_are_purged(
    make_client, make_api_key, db
):
    from jobline_gateway import store

    client = await make_client(idempotency_retention_seconds=3600)
    key = await make_api_key()
    await client.post("/v1/jobs", json=job_body(), headers={**bearer(key), "Idempotency-Key": "r"})
    tenant = await tenant_of(db, key)
    async with db.connection() as conn:
        retained = await conn.fetchval(
            "SELECT EXTRACT(EPOCH FROM expires_at - created_at) FROM idempotency_keys"
            " WHERE tenant_id = $1",
            tenant,
        )
    assert 3590 < float(retained) < 3610
    await expire_keys(db, tenant)
    async with db.connection() as conn:
        assert await store.purge_idempotency_keys(conn) >= 1
        left = await conn.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", tenant
        )
    assert left == 0
