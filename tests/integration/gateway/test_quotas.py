"""Tenant quotas in one gateway (two gateway processes: tests/e2e/test_quotas.py), the
per-address limit before authentication, and production mode."""

from __future__ import annotations

from typing import Any

from jobline.pg.db import Database
from tests.integration.gateway.conftest import MakeClient, bearer, job_body, tenant_of


async def _set_quotas(client: Any, operator: str, tenant: str, **quotas: Any) -> Any:
    response = await client.put(
        f"/v1/admin/tenants/{tenant}/quotas", json=quotas, headers=bearer(operator)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_operator_sets_quotas_and_defaults_fill_the_rest(
    make_client: MakeClient, make_api_key, db: Database
) -> None:
    client = await make_client(quota_max_schedules=77)
    operator = await make_api_key(scopes="admin")
    tenant = await tenant_of(db, await make_api_key(scopes="jobs:write"))
    shown = await _set_quotas(client, operator, tenant, submissions_per_second=12.5)
    assert shown["submissions_per_second"] == 12.5
    assert shown["max_schedules"] == 77  # the default from settings
    assert shown["overridden"] == ["submissions_per_second"]
    got = await client.get(f"/v1/admin/tenants/{tenant}/quotas", headers=bearer(operator))
    assert got.json() == shown
    assert (
        await client.put(
            f"/v1/admin/tenants/{tenant}/quotas",
            json={"max_schedules": 0},
            headers=bearer(operator),
        )
    ).status_code == 422
    tenant_key = await make_api_key(scopes="jobs:write,keys:manage,policies:write", tenant=tenant)
    assert (
        await client.get(f"/v1/admin/tenants/{tenant}/quotas", headers=bearer(tenant_key))
    ).status_code == 403
    async with db.connection() as conn:
        action = await conn.fetchval("SELECT action FROM audit_log WHERE target = $1", tenant)
    assert action == "quota.set"


async def test_schedule_count_and_interval_quotas_are_422_with_the_reason(
    make_client: MakeClient, make_api_key, db: Database
) -> None:
    client = await make_client()
    key = await make_api_key(scopes="schedules:write,jobs:read")
    tenant = await tenant_of(db, key)
    await _set_quotas(
        client,
        await make_api_key(scopes="admin"),
        tenant,
        max_schedules=2,
        min_schedule_interval_seconds=60,
    )
    job = {"type": "echo", "payload": {}}

    async def create(name: str, **timing: Any) -> Any:
        return await client.post(
            "/v1/schedules", json={"name": name, "job": job, **timing}, headers=bearer(key)
        )

    fast = await create("fast", interval_seconds=5)
    assert fast.status_code == 422
    assert fast.headers["content-type"] == "application/problem+json"
    assert fast.json()["type"].endswith("quota-exceeded")
    assert "min_schedule_interval_seconds" in fast.json()["detail"]
    assert (await create("every-second", cron="* * * * * *")).status_code == 422

    first = await create("a", interval_seconds=60)
    assert first.status_code == 201, first.text
    assert (await create("b", cron="*/5 * * * *")).status_code == 201
    third = await create("c", interval_seconds=3600)
    assert third.status_code == 422
    assert "max_schedules" in third.json()["detail"]
    faster = await client.patch(
        f"/v1/schedules/{first.json()['id']}", json={"interval_seconds": 10}, headers=bearer(key)
    )
    assert faster.status_code == 422
    slower = await client.patch(
        f"/v1/schedules/{first.json()['id']}", json={"interval_seconds": 120}, headers=bearer(key)
    )
    assert slower.status_code == 200


async def test_unfinished_jobs_quota_is_429_with_retry_after_or_422_when_it_never_fits(
    make_client: MakeClient, make_api_key, db: Database
) -> None:
    client = await make_client()
    key = await make_api_key(scopes="jobs:write")
    tenant = await tenant_of(db, key)
    await _set_quotas(client, await make_api_key(scopes="admin"), tenant, max_unfinished_jobs=3)
    for _ in range(3):
        assert (
            await client.post("/v1/jobs", json=job_body(), headers=bearer(key))
        ).status_code == 201
    refused = await client.post("/v1/jobs", json=job_body(), headers=bearer(key))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert "max_unfinished_jobs" in refused.json()["detail"]
    never = await client.post(
        "/v1/jobs/batch", json={"jobs": [job_body()] * 4}, headers=bearer(key)
    )
    assert never.status_code == 422


async def test_submission_rate_quota_leases_blocks_instead_of_a_statement_per_submission(
    make_client: MakeClient, make_api_key, db: Database
) -> None:
    client = await make_client()
    gate = client.app.state.admission
    key = await make_api_key(scopes="jobs:write")
    tenant = await tenant_of(db, key)
    operator = await make_api_key(scopes="admin")
    await _set_quotas(client, operator, tenant, submissions_per_second=1000, submission_burst=2000)
    for _ in range(50):
        assert (
            await client.post("/v1/jobs", json=job_body(), headers=bearer(key))
        ).status_code == 201
    assert gate.leases == 1  # one block of 100 (0.1 s of the rate) for 50 submissions

    # A tiny rate: the burst is admitted, then 429 with Retry-After; a batch larger than the
    # burst can never be admitted (422).
    await _set_quotas(client, operator, tenant, submissions_per_second=0.5, submission_burst=3)
    gate._pools.clear()  # drop the tokens leased under the old quota
    async with db.connection() as conn:
        await conn.execute("DELETE FROM tenant_rate_buckets WHERE tenant_id = $1", tenant)
    codes = [
        (await client.post("/v1/jobs", json=job_body(), headers=bearer(key))).status_code
        for _ in range(4)
    ]
    assert codes == [201, 201, 201, 429]
    refused = await client.post("/v1/jobs", json=job_body(), headers=bearer(key))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "submissions_per_second" in refused.json()["detail"]
    big = await client.post("/v1/jobs/batch", json={"jobs": [job_body()] * 4}, headers=bearer(key))
    assert big.status_code == 422
    assert "submission_burst" in big.json()["detail"]


async def test_the_per_address_limit_answers_before_authentication_and_the_database(
    make_client: MakeClient, make_api_key
) -> None:
    client = await make_client(gateway_address_rate_per_second=0.01, gateway_address_burst=3)
    database = client.app.state.db
    taken = 0
    acquire = database.acquire

    async def counting() -> Any:
        nonlocal taken
        taken += 1
        return await acquire()

    database.acquire = counting
    statuses = [(await client.get("/v1/jobs")).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    refused = await client.get("/v1/jobs", headers=bearer(await make_api_key()))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    assert taken == 0  # neither the 401s (no key) nor the 429 touched the database
    assert (await client.get("/healthz")).status_code == 200  # probes are exempt


async def test_production_mode_hides_docs_and_keeps_readyz_terse(make_client: MakeClient) -> None:
    # Production refuses the suite's open registry (gateway_accept_undeclared).
    prod = await make_client(
        env="prod", kafka_bootstrap="127.0.0.1:9", gateway_accept_undeclared=False
    )
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await prod.get(path)).status_code == 404
    ready = await prod.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "ok", "broker": "unavailable"}
    assert "127.0.0.1" not in ready.text

    dev = await make_client(kafka_bootstrap="127.0.0.1:9")
    assert (await dev.get("/docs")).status_code == 200
    assert "127.0.0.1:9" in (await dev.get("/readyz")).text
    enabled = await make_client(env="prod", docs_enabled=True, gateway_accept_undeclared=False)
    assert (await enabled.get("/openapi.json")).status_code == 200
