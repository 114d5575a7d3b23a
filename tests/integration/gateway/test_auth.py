"""401/403/404 on every route, tenant isolation, revocation and expiry, admin key routes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest

from jobline.core import apikeys
from jobline.core.apikeys import Scope
from jobline.pg import keystore
from jobline.pg.db import Database
from jobline_gateway.catalog import APPLICATION_NAME
from tests.integration.gateway.conftest import bearer, count_jobs, job_body, key_id_of
from tests.support import wait_for

MISSING = "00000000-0000-4000-8000-000000000000"

# (method, path template, body, scope the route needs)
ROUTES = [
    ("POST", "/v1/jobs", job_body(), "jobs:write"),
    ("POST", "/v1/jobs/batch", {"jobs": [job_body()]}, "jobs:write"),
    ("GET", "/v1/jobs", None, "jobs:read"),
    ("GET", "/v1/jobs/{id}", None, "jobs:read"),
    ("GET", "/v1/jobs/{id}/attempts", None, "jobs:read"),
    ("POST", "/v1/jobs/{id}/cancel", None, "jobs:write"),
    ("POST", "/v1/jobs/{id}/redrive", None, "jobs:write"),
    ("POST", "/v1/admin/keys", {"tenant": "x", "name": "n", "scopes": ["jobs:read"]}, "admin"),
    ("GET", "/v1/admin/keys", None, "admin"),
    ("DELETE", "/v1/admin/keys/{id}", None, "admin"),
]
ROUTE_IDS = [f"{m} {p}" for m, p, _, _ in ROUTES]


def _problem(response, status: int):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance"} <= body.keys()
    return body


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer jl_000000000000_" + "x" * 43, "Bearer nonsense", "Basic dXNlcjpwYXNz"],
    ids=["missing", "unknown", "malformed", "not-bearer"],
)
async def test_every_route_refuses_a_request_without_a_valid_key(client, route, authorization):
    method, path, body, _ = route
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.request(method, path.format(id=MISSING), json=body, headers=headers)
    _problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_every_route_refuses_a_key_without_its_scope(client, make_api_key, route):
    method, path, body, scope = route
    others = ",".join(s.value for s in Scope if s.value != scope)
    key = await make_api_key(scopes=others)
    response = await client.request(method, path.format(id=MISSING), json=body, headers=bearer(key))
    assert scope in _problem(response, 403)["detail"]


async def test_another_tenants_job_is_not_found_on_every_route(client, make_api_key):
    owner = await make_api_key()
    stranger = await make_api_key()
    created = await client.post("/v1/jobs", json=job_body(), headers=bearer(owner))
    job_id = created.json()["id"]
    for method, path in [
        ("GET", "/v1/jobs/{id}"),
        ("GET", "/v1/jobs/{id}/attempts"),
        ("POST", "/v1/jobs/{id}/cancel"),
        ("POST", "/v1/jobs/{id}/redrive"),
    ]:
        for who, status in ((stranger, 404), (owner, None)):
            response = await client.request(method, path.format(id=job_id), headers=bearer(who))
            if status == 404:
                body = _problem(response, 404)
                # Indistinguishable from a job that never existed.
                missing = await client.request(method, path.format(id=MISSING), headers=bearer(who))
                assert _problem(missing, 404)["title"] == body["title"]
            else:
                assert response.status_code in (200, 409), response.text
    listed = await client.get("/v1/jobs", headers=bearer(stranger))
    assert listed.json()["jobs"] == []
    # The stranger's cancel did not touch the owner's job.
    mine = await client.get(f"/v1/jobs/{job_id}", headers=bearer(owner))
    assert mine.json()["status"] == "cancelled"  # the owner's own cancel above


async def test_the_same_idempotency_key_in_two_tenants_makes_two_jobs(client, make_api_key):
    a, b = await make_api_key(), await make_api_key()
    headers = {"Idempotency-Key": "shared-key"}
    first = await client.post("/v1/jobs", json=job_body(), headers={**bearer(a), **headers})
    second = await client.post("/v1/jobs", json=job_body(), headers={**bearer(b), **headers})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


async def cache_key(client, key: str) -> None:
    """Use ``key`` until the gateway holds its row: the NOTIFY of the key's own creation may
    arrive after a first request and drop what that request cached."""
    prefix = apikeys.prefix_of(key)
    for _ in range(100):
        assert (await client.get("/v1/jobs", headers=bearer(key))).status_code == 200
        await asyncio.sleep(0.02)
        if prefix in client.catalog._keys:
            return
    raise AssertionError("the gateway never cached the key")


def silence_notifications(client, monkeypatch) -> None:
    """The in-process gateway stops hearing catalog changes, while staying live: as if
    every NOTIFY took forever. What it caches then stays until the gateway itself drops it."""
    monkeypatch.setattr(client.catalog.listener, "on_notify", lambda _payload: None)


async def test_revoking_a_key_takes_effect_on_the_next_request(client, make_api_key, monkeypatch):
    admin = await make_api_key(scopes="admin")
    created = await client.post(
        "/v1/admin/keys",
        json={"tenant": f"t-{uuid4().hex[:8]}", "name": "ci", "scopes": ["jobs:read"]},
        headers=bearer(admin),
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    await cache_key(client, key)
    # Only the gateway's own drop of its copy can make the next request fail.
    silence_notifications(client, monkeypatch)
    revoked = await client.delete(f"/v1/admin/keys/{key_id}", headers=bearer(admin))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    _problem(await client.get("/v1/jobs", headers=bearer(key)), 401)


async def revoke_unheard(client, db: Database, key: str, monkeypatch) -> None:
    """Revoke ``key`` with SQL while ``client``'s gateway holds its row and hears nothing."""
    await cache_key(client, key)
    silence_notifications(client, monkeypatch)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1", await key_id_of(db, key)
        )
    stale = await client.get("/v1/jobs", headers=bearer(key))
    assert stale.status_code == 200, "the cached copy was not stale: nothing would be tested"


async def test_a_key_revoked_in_the_database_cannot_submit_from_a_stale_cache(
    client, make_api_key, db: Database, monkeypatch
):
    """The statement-level guard: insert_jobs checks the key in the statement that writes.

    The key is revoked with SQL (bypassing the API) while the gateway holds its row and hears
    no notification, so the gateway's own lookup still accepts it: a read is served (the
    window the NOTIFY closes), but a submission is refused by the INSERT itself, writes
    nothing, and the gateway drops its copy, so the key fails on every route from then on.
    """
    key = await make_api_key(scopes="jobs:read,jobs:write")
    await revoke_unheard(client, db, key, monkeypatch)
    refused = await client.post("/v1/jobs", json=job_body(), headers=bearer(key))
    _problem(refused, 401)
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert await count_jobs(db, key) == 0
    _problem(await client.get("/v1/jobs", headers=bearer(key)), 401)


async def test_a_stale_key_claims_no_idempotency_key_and_inserts_no_batch(
    client, make_api_key, db: Database, monkeypatch
):
    key = await make_api_key(scopes="jobs:read,jobs:write")
    await revoke_unheard(client, db, key, monkeypatch)
    refused = await client.post(
        "/v1/jobs/batch",
        json={"jobs": [job_body(), job_body()]},
        headers={**bearer(key), "Idempotency-Key": "k-1"},
    )
    _problem(refused, 401)
    assert await count_jobs(db, key) == 0
    async with db.connection() as conn:
        claimed = await conn.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE key = 'k-1'"
            " AND tenant_id = (SELECT tenant_id FROM api_keys WHERE id = $1)",
            await key_id_of(db, key),
        )
    assert claimed == 0


async def test_a_key_expiring_while_cached_is_refused(client, db: Database):
    tenant = f"t-{uuid4().hex[:8]}"
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    async with db.transaction() as conn:
        _, key = await keystore.create_key(
            conn,
            tenant_id=tenant,
            name="soon",
            scopes=frozenset({Scope.JOBS_READ}),
            expires_at=expires_at,
        )
    assert (await client.get("/v1/jobs", headers=bearer(key))).status_code == 200  # now cached
    await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.1)
    # Nothing changed in the database: the cached copy's own expiry refuses it.
    _problem(await client.get("/v1/jobs", headers=bearer(key)), 401)


async def test_a_key_expired_in_the_database_is_refused_once_the_change_is_heard(
    client, db: Database
):
    tenant = f"t-{uuid4().hex[:8]}"
    async with db.transaction() as conn:
        record, key = await keystore.create_key(
            conn,
            tenant_id=tenant,
            name="soon",
            scopes=frozenset({Scope.JOBS_READ}),
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    assert (await client.get("/v1/jobs", headers=bearer(key))).status_code == 200  # now cached
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", record.id
        )
    # The NOTIFY reaches the gateway's LISTEN session a moment after the commit (asynchronously).
    await wait_for(lambda: _refused(client, key), timeout=5.0, interval=0.05)
    _problem(await client.get("/v1/jobs", headers=bearer(key)), 401)


async def _refused(client, key: str) -> bool:
    response = await client.get("/v1/jobs", headers=bearer(key))
    return bool(response.status_code == 401)


async def _catalog_sessions(db: Database) -> set[int]:
    """Backends of gateways' catalogs that are listening on this database (their last
    statement is the LISTEN, or the probe that follows it)."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = $1 AND (query ILIKE 'LISTEN%' OR query = 'SELECT 1')",
            APPLICATION_NAME,
        )
    return {r["pid"] for r in rows}


async def test_a_revocation_through_one_gateway_reaches_another_at_once(
    stack, make_api_key, db: Database
):
    """Two gateway processes: the key is cached by the second, revoked through the first; the
    very next request through the second is refused (the NOTIFY on jobline_catalog)."""
    before = await _catalog_sessions(db)
    first, second = stack.start("gateway"), stack.start("gateway")
    deadline = time.monotonic() + 20
    while len((await _catalog_sessions(db)) - before) < 2:
        assert time.monotonic() < deadline, "the gateways' catalogs did not start listening"
        await asyncio.sleep(0.05)
    admin = await make_api_key(scopes="admin")
    key = await make_api_key(scopes="jobs:read")
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(2):  # the first read caches the key in the second gateway
            assert (await http.get(f"{second.url}/v1/jobs", headers=bearer(key))).status_code == 200
        key_id = await key_id_of(db, key)
        revoked = await http.delete(f"{first.url}/v1/admin/keys/{key_id}", headers=bearer(admin))
        assert revoked.status_code == 200, revoked.text
        _problem(await http.get(f"{second.url}/v1/jobs", headers=bearer(key)), 401)
        _problem(await http.get(f"{first.url}/v1/jobs", headers=bearer(key)), 401)


async def test_admin_creates_lists_and_revokes_keys(client, make_api_key):
    admin = await make_api_key(scopes="admin")
    tenant = f"t-{uuid4().hex[:8]}"
    created = await client.post(
        "/v1/admin/keys",
        json={
            "tenant": tenant,
            "name": "deploy",
            "scopes": ["jobs:write", "jobs:read"],
            "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
        headers=bearer(admin),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith("jl_")
    assert body["tenant"] == tenant
    assert body["scopes"] == ["jobs:read", "jobs:write"]
    job = await client.post("/v1/jobs", json=job_body(), headers=bearer(body["key"]))
    assert job.status_code == 201
    listed = await client.get("/v1/admin/keys", params={"tenant": tenant}, headers=bearer(admin))
    keys = listed.json()["keys"]
    assert [k["id"] for k in keys] == [body["id"]]
    assert "key" not in keys[0]  # the secret is never shown again
    _problem(await client.delete(f"/v1/admin/keys/{MISSING}", headers=bearer(admin)), 404)
    past = await client.post(
        "/v1/admin/keys",
        json={
            "tenant": tenant,
            "name": "x",
            "scopes": ["admin"],
            "expires_at": "2001-01-01T00:00:00Z",
        },
        headers=bearer(admin),
    )
    assert _problem(past, 422)["errors"][0]["field"] == "expires_at"
    bad_scope = await client.post(
        "/v1/admin/keys",
        json={"tenant": tenant, "name": "x", "scopes": ["root"]},
        headers=bearer(admin),
    )
    assert _problem(bad_scope, 422)["errors"][0]["pointer"] == "/scopes/0"
