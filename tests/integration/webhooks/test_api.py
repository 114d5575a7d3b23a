"""``/v1/webhooks`` through the gateway in-process: endpoints, secrets shown once, scopes,
tenancy, the address policy when saving, limits, the delivery log and replay."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from jobline.core.webhooks import signing
from jobline.pg import webhookstore
from jobline.pg.webhookstore import NewDelivery
from tests.integration.gateway.conftest import bearer

ALLOW = {"webhook_allow_private_addresses": True}


def webhook_body(**changes: Any) -> dict[str, Any]:
    return {
        "url": "https://hooks.example.com/jobline",
        "event_types": ["jobline.job.succeeded"],
        **changes,
    }


async def _create(client, key: str, **changes: Any) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", json=webhook_body(**changes), headers=bearer(key))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_create_shows_the_secret_once_and_reads_never_do(client, make_api_key):
    key = await make_api_key(scopes="webhooks:manage")
    created = await _create(client, key, description="billing")
    assert created["secret"].startswith("whsec_")
    signing.secret_key(created["secret"])  # valid base64 key
    assert created["enabled"] is True
    assert created["event_types"] == ["jobline.job.succeeded"]
    got = (await client.get(f"/v1/webhooks/{created['id']}", headers=bearer(key))).json()
    assert "secret" not in got
    assert got["description"] == "billing"
    listed = (await client.get("/v1/webhooks", headers=bearer(key))).json()
    assert [w["id"] for w in listed["webhooks"]] == [created["id"]]
    assert all("secret" not in w for w in listed["webhooks"])


async def test_the_scope_is_required_and_tenants_are_apart(client, make_api_key):
    key = await make_api_key(scopes="webhooks:manage")
    other = await make_api_key(scopes="webhooks:manage")
    reader = await make_api_key(scopes="jobs:read,jobs:write")
    created = await _create(client, key)
    denied = await client.post("/v1/webhooks", json=webhook_body(), headers=bearer(reader))
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    for method, path in (
        ("GET", f"/v1/webhooks/{created['id']}"),
        ("DELETE", f"/v1/webhooks/{created['id']}"),
        ("POST", f"/v1/webhooks/{created['id']}/rotate-secret"),
        ("GET", f"/v1/webhooks/{created['id']}/deliveries"),
    ):
        response = await client.request(method, path, headers=bearer(other))
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["status"] == 404
    assert (await client.get("/v1/webhooks", headers=bearer(other))).json()["webhooks"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080/",
    ],
)
async def test_private_addresses_are_refused_unless_allowed(make_client, make_api_key, url):
    strict = await make_client()
    key = await make_api_key(scopes="webhooks:manage")
    refused = await strict.post("/v1/webhooks", json=webhook_body(url=url), headers=bearer(key))
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["errors"][0]["field"] == "url"
    assert "refused" in problem["errors"][0]["message"]
    created = await _create(strict, key)
    patched = await strict.patch(
        f"/v1/webhooks/{created['id']}", json={"url": url}, headers=bearer(key)
    )
    assert patched.status_code == 422
    allowing = await make_client(**ALLOW)
    await _create(allowing, key, url=url)


async def test_invalid_bodies_are_422(client, make_api_key):
    key = await make_api_key(scopes="webhooks:manage")
    for body in (
        webhook_body(event_types=[]),
        webhook_body(event_types=["jobline.job.running"]),
        webhook_body(url="ftp://example.com/"),
        webhook_body(extra=True),
    ):
        response = await client.post("/v1/webhooks", json=body, headers=bearer(key))
        assert response.status_code == 422, body


async def test_endpoints_per_tenant_are_limited(make_client, make_api_key):
    client = await make_client(webhook_max_endpoints=2)
    key = await make_api_key(scopes="webhooks:manage")
    await _create(client, key)
    await _create(client, key)
    third = await client.post("/v1/webhooks", json=webhook_body(), headers=bearer(key))
    assert third.status_code == 409
    assert third.json()["type"].endswith("limit-reached")


async def test_update_rotate_and_delete(client, make_api_key):
    key = await make_api_key(scopes="webhooks:manage")
    created = await _create(client, key)
    path = f"/v1/webhooks/{created['id']}"
    patched = await client.patch(
        path, json={"event_types": ["jobline.job.*", "*"], "enabled": False}, headers=bearer(key)
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["event_types"] == ["jobline.job.*", "*"]
    assert patched.json()["enabled"] is False
    assert patched.json()["disabled_reason"] == "disabled by a PATCH"
    # null and absent fields change nothing
    same = await client.patch(path, json={"url": None}, headers=bearer(key))
    assert same.json()["url"] == created["url"]
    enabled = await client.patch(path, json={"enabled": True}, headers=bearer(key))
    assert (enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (True, None)

    rotated = await client.post(f"{path}/rotate-secret", headers=bearer(key))
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None

    assert (await client.delete(path, headers=bearer(key))).status_code == 204
    assert (await client.get(path, headers=bearer(key))).status_code == 404
    assert (await client.delete(path, headers=bearer(key))).status_code == 404


async def test_the_delivery_log_pages_newest_first_and_replays(client, make_api_key, db):
    key = await make_api_key(scopes="webhooks:manage")
    created = await _create(client, key)
    events = [f"{uuid4()}:1" for _ in range(5)]
    async with db.transaction() as conn:  # one created_at for all: the id breaks the tie
        await webhookstore.insert_deliveries(
            conn, [NewDelivery(created["id"], e, "jobline.job.succeeded", "{}") for e in events]
        )
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,"
            " attempts = 8, finished_at = now(), last_error = 'HTTP 500' WHERE event_id = $1",
            events[0],
        )
    path = f"/v1/webhooks/{created['id']}/deliveries"
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(path, params=params, headers=bearer(key))).json()
        seen += page["deliveries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(d["event_id"] for d in seen) == sorted(events)
    assert [(d["created_at"], d["id"]) for d in seen] == sorted(
        ((d["created_at"], d["id"]) for d in seen), reverse=True
    )
    failed = (await client.get(path, params={"status": "failed"}, headers=bearer(key))).json()
    [dead] = failed["deliveries"]
    assert (dead["event_id"], dead["attempts"], dead["last_error"]) == (events[0], 8, "HTTP 500")

    # A cursor of the endpoints listing is refused by the deliveries listing.
    await _create(client, key)
    await _create(client, key)
    endpoints = (await client.get("/v1/webhooks", params={"limit": 1}, headers=bearer(key))).json()
    wrong = await client.get(path, params={"cursor": endpoints["next_cursor"]}, headers=bearer(key))
    assert wrong.status_code == 422

    replayed = await client.post(f"{path}/{dead['id']}/replay", headers=bearer(key))
    assert replayed.status_code == 202, replayed.text
    again = replayed.json()
    assert (again["status"], again["attempts"], again["finished_at"]) == ("pending", 0, None)
    got = await client.get(f"{path}/{dead['id']}", headers=bearer(key))
    assert got.json()["status"] == "pending"
    assert (await client.post(f"{path}/{uuid4()}/replay", headers=bearer(key))).status_code == 404

    await client.patch(
        f"/v1/webhooks/{created['id']}", json={"enabled": False}, headers=bearer(key)
    )
    refused = await client.post(f"{path}/{dead['id']}/replay", headers=bearer(key))
    assert refused.status_code == 409
    # Disabling held the pending deliveries: out of the claim until enabled again.
    async with db.connection() as conn:
        held = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1"
            " AND status = 'pending' AND next_attempt_at IS NULL",
            created["id"],
        )
    assert held == 5
    await client.patch(f"/v1/webhooks/{created['id']}", json={"enabled": True}, headers=bearer(key))
    async with db.connection() as conn:
        due = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1"
            " AND next_attempt_at IS NOT NULL",
            created["id"],
        )
    assert due == 5
