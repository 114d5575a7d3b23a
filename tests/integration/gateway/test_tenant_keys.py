"""Scopes: a tenant's own keys (keys:manage) stay in its tenant and never escalate; job-type
policies need policies:write; every key and policy change is audited."""

from __future__ import annotations

from jobline.pg.db import Database
from tests.integration.gateway.conftest import GatewayClient, bearer, job_body, tenant_of


async def _audit(db: Database, tenant: str) -> list[tuple[str, str]]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT action, target FROM audit_log WHERE tenant_id = $1 ORDER BY at, id", tenant
        )
    return [(r["action"], r["target"]) for r in rows]


async def test_keys_manage_creates_lists_and_revokes_only_its_own_tenants_keys(
    client: GatewayClient, make_api_key, db: Database
) -> None:
    manager = await make_api_key(scopes="keys:manage,jobs:read,jobs:write")
    tenant = await tenant_of(db, manager)
    other = await make_api_key(scopes="jobs:read")
    other_tenant = await tenant_of(db, other)
    auth = bearer(manager)

    created = await client.post(
        "/v1/keys", json={"name": "ci", "scopes": ["jobs:read"]}, headers=auth
    )
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["tenant"] == tenant
    assert new["scopes"] == ["jobs:read"]
    assert (await client.get("/v1/jobs", headers=bearer(new["key"]))).status_code == 200

    # Never a scope the calling key lacks: not admin, not schedules:write.
    for scopes in (["admin"], ["jobs:read", "schedules:write"], ["policies:write"]):
        refused = await client.post("/v1/keys", json={"name": "up", "scopes": scopes}, headers=auth)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "holds itself" in refused.json()["detail"]
    # The tenant is the caller's: the body cannot name another one.
    smuggled = await client.post(
        "/v1/keys",
        json={"name": "x", "scopes": ["jobs:read"], "tenant": other_tenant},
        headers=auth,
    )
    assert smuggled.status_code == 422

    listed = (await client.get("/v1/keys", headers=auth)).json()["keys"]
    assert {k["tenant"] for k in listed} == {tenant}
    assert len(listed) == 2

    # Another tenant's key answers like a key that does not exist, and stays usable.
    other_id = await client.get("/v1/admin/keys", headers=bearer(await make_api_key()))
    ids = [k["id"] for k in other_id.json()["keys"] if k["tenant"] == other_tenant]
    foreign = await client.delete(f"/v1/keys/{ids[0]}", headers=auth)
    assert foreign.status_code == 404
    assert (await client.get("/v1/jobs", headers=bearer(other))).status_code == 200

    revoked = await client.delete(f"/v1/keys/{new['id']}", headers=auth)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await client.get("/v1/jobs", headers=bearer(new["key"]))).status_code == 401

    # Without keys:manage none of this is allowed, and the operator's routes stay closed.
    plain = bearer(await make_api_key(scopes="jobs:read,jobs:write", tenant=tenant))
    assert (await client.get("/v1/keys", headers=plain)).status_code == 403
    assert (await client.get("/v1/admin/keys", headers=auth)).status_code == 403

    assert await _audit(db, tenant) == [
        ("key.create", new["id"]),
        ("key.revoke", new["id"]),
    ]


async def test_the_operator_key_actions_are_audited_with_who_and_where(
    client: GatewayClient, make_api_key, db: Database
) -> None:
    operator = await make_api_key(scopes="admin")
    operator_tenant = await tenant_of(db, operator)
    created = await client.post(
        "/v1/admin/keys",
        json={"tenant": "audited-tenant", "name": "svc", "scopes": ["jobs:write"]},
        headers=bearer(operator),
    )
    assert created.status_code == 201
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM audit_log WHERE target = $1", created.json()["id"])
    assert row["action"] == "key.create"
    assert row["tenant_id"] == operator_tenant  # who: the acting key's tenant ...
    assert row["key_id"] is not None  # ... and key
    assert row["address"] == "127.0.0.1"  # from where (httpx's ASGI client address)
    assert row["detail"] == {
        "tenant": "audited-tenant",
        "name": "svc",
        "scopes": ["jobs:write"],
    }


async def test_policies_write_sets_a_job_type_policy_that_submissions_use(
    client: GatewayClient, make_api_key, db: Database
) -> None:
    writer = await make_api_key(scopes="policies:write,jobs:write,jobs:read")
    tenant = await tenant_of(db, writer)
    submitter = await make_api_key(scopes="jobs:write,jobs:read", tenant=tenant)
    body = {"max_attempts": 9, "backoff": {"kind": "fixed", "base_seconds": 3}}

    denied = await client.put("/v1/policies/email.send", json=body, headers=bearer(submitter))
    assert denied.status_code == 403

    put = await client.put("/v1/policies/email.send", json=body, headers=bearer(writer))
    assert put.status_code == 200, put.text
    assert put.json()["source"] == "api"
    assert put.json()["backoff"]["kind"] == "fixed"

    # The catalog hears the change; a job naming no policy of its own takes it.
    job = (await client.post("/v1/jobs", json=job_body(), headers=bearer(submitter))).json()
    assert job["max_attempts"] == 9
    listed = (await client.get("/v1/policies", headers=bearer(submitter))).json()
    assert [p["type"] for p in listed["policies"]] == ["email.send"]

    bad = await client.put(
        "/v1/policies/email.send",
        json={"backoff": {"base_seconds": 10, "max_seconds": 1}},
        headers=bearer(writer),
    )
    assert bad.status_code == 422
    assert (
        await client.delete("/v1/policies/email.send", headers=bearer(writer))
    ).status_code == 204
    assert (
        await client.delete("/v1/policies/email.send", headers=bearer(writer))
    ).status_code == 404
    assert await _audit(db, tenant) == [
        ("policy.set", f"{tenant}/email.send"),
        ("policy.delete", f"{tenant}/email.send"),
    ]
