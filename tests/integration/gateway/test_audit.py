"""The audit log: cancel and redrive are recorded in their own transaction; operators query
it with filters and cursor pagination."""

from __future__ import annotations

from jobline.pg.db import Database
from tests.integration.gateway.conftest import GatewayClient, bearer, job_body, tenant_of
from tests.integration.gateway.test_lifecycle import run_and_fail


async def test_cancel_and_redrive_are_audited_and_operators_page_through_them(
    client: GatewayClient, make_api_key, db: Database
) -> None:
    key = await make_api_key(scopes="jobs:write,jobs:read")
    tenant = await tenant_of(db, key)
    auth = bearer(key)
    operator = bearer(await make_api_key(scopes="admin"))

    queued = (await client.post("/v1/jobs", json=job_body(), headers=auth)).json()
    assert (await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=auth)).status_code == 200
    # A refused action (409) leaves no entry: it did not happen.
    assert (await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=auth)).status_code == 409
    dead = (await client.post("/v1/jobs", json=job_body(max_attempts=1), headers=auth)).json()
    await run_and_fail(db, dead["id"])
    assert (await client.post(f"/v1/jobs/{dead['id']}/redrive", headers=auth)).status_code == 200

    assert (await client.get("/v1/audit", headers=auth)).status_code == 403
    page = await client.get("/v1/audit", params={"tenant": tenant}, headers=operator)
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("job.redrive", dead["id"]),
        ("job.cancel", queued["id"]),
    ]
    assert entries[0]["detail"] == {"from": "dead"}
    assert entries[1]["detail"] == {"from": "queued"}
    assert all(e["tenant"] == tenant and e["key_id"] and e["address"] for e in entries)

    only = await client.get(
        "/v1/audit", params={"tenant": tenant, "action": "job.cancel"}, headers=operator
    )
    assert [e["target"] for e in only.json()["entries"]] == [queued["id"]]
    by_target = await client.get("/v1/audit", params={"target": dead["id"]}, headers=operator)
    assert [e["action"] for e in by_target.json()["entries"]] == ["job.redrive"]

    first = await client.get("/v1/audit", params={"tenant": tenant, "limit": 1}, headers=operator)
    cursor = first.json()["next_cursor"]
    assert cursor
    assert first.json()["entries"][0]["action"] == "job.redrive"
    second = await client.get(
        "/v1/audit", params={"tenant": tenant, "limit": 1, "cursor": cursor}, headers=operator
    )
    assert [e["action"] for e in second.json()["entries"]] == ["job.cancel"]
    assert second.json()["next_cursor"] is None
    bad = await client.get("/v1/audit", params={"cursor": "nope"}, headers=operator)
    assert bad.status_code == 422
