"""Reading, listing, attempts, cancel and redrive through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from jobline.core.states import Claim, Fail
from jobline.pg import jobstore
from jobline.pg.db import Database
from tests.integration.gateway.conftest import bearer, job_body, tenant_of

WORKER = "w-1"


async def claim(db: Database, job_id: str) -> int:
    """What a worker does with the job's work message: claim its next attempt."""
    async with db.transaction() as conn:
        job = (await jobstore.lock_many(conn, [UUID(job_id)]))[UUID(job_id)]
    attempt = job.attempt + 1
    async with db.transaction() as conn:
        await jobstore.apply(conn, UUID(job_id), Claim(attempt, WORKER, 30), datetime.now(UTC))
    return attempt


async def run_and_fail(db: Database, job_id: str, *, retryable: bool = False) -> None:
    """What a worker would do: claim the job, then fail it."""
    attempt = await claim(db, job_id)
    async with db.transaction() as conn:
        await jobstore.apply(
            conn,
            UUID(job_id),
            Fail(attempt, WORKER, "Boom", "it broke", retryable=retryable),
            datetime.now(UTC),
        )


async def test_cancel_and_redrive_follow_the_state_machine(client, make_api_key, db):
    key = await make_api_key()
    auth = bearer(key)
    queued = (await client.post("/v1/jobs", json=job_body(), headers=auth)).json()
    cancelled = await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=auth)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=auth)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert (await client.post(f"/v1/jobs/{queued['id']}/redrive", headers=auth)).status_code == 409

    scheduled = (
        await client.post("/v1/jobs", json=job_body(delay_seconds=300), headers=auth)
    ).json()
    response = await client.post(f"/v1/jobs/{scheduled['id']}/cancel", headers=auth)
    assert response.json()["status"] == "cancelled"

    running = (await client.post("/v1/jobs", json=job_body(), headers=auth)).json()
    await claim(db, running["id"])
    requested = (await client.post(f"/v1/jobs/{running['id']}/cancel", headers=auth)).json()
    assert requested["status"] == "running"
    assert requested["cancel_requested_at"] is not None

    dead = (await client.post("/v1/jobs", json=job_body(max_attempts=1), headers=auth)).json()
    await run_and_fail(db, dead["id"])
    shown = (await client.get(f"/v1/jobs/{dead['id']}", headers=auth)).json()
    assert shown["status"] == "dead"
    assert shown["last_error"]["error_class"] == "Boom"
    assert shown["timings"]["started_at"]
    assert shown["timings"]["finished_at"]
    redriven = await client.post(f"/v1/jobs/{dead['id']}/redrive", headers=auth)
    assert redriven.status_code == 200
    assert redriven.json()["status"] == "queued"
    assert redriven.json()["attempts_left"] == 1


async def test_attempts_list_each_attempt(client, make_api_key, db):
    key = await make_api_key()
    job = (await client.post("/v1/jobs", json=job_body(max_attempts=1), headers=bearer(key))).json()
    assert (await client.get(job["links"]["attempts"], headers=bearer(key))).json() == {
        "attempts": []
    }
    await run_and_fail(db, job["id"])
    attempts = (await client.get(job["links"]["attempts"], headers=bearer(key))).json()["attempts"]
    assert len(attempts) == 1
    assert attempts[0]["worker_id"] == "w-1"
    assert attempts[0]["outcome"] == "failed"
    assert attempts[0]["error"]["error_class"] == "Boom"
    assert attempts[0]["finished_at"] is not None


async def test_listing_pages_through_every_job_once_newest_first(make_client, make_api_key, db):
    client = await make_client(gateway_page_size_max=7)
    key = await make_api_key()
    auth = bearer(key)
    ids = []
    for i in range(12):
        body = job_body(type="a" if i % 2 else "b", queue="q1" if i < 6 else "q2")
        ids.append((await client.post("/v1/jobs", json=body, headers=auth)).json()["id"])
    # Several jobs share one created_at: the id breaks the tie, so none is lost or repeated.
    tenant = await tenant_of(db, key)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET created_at = date_trunc('second', now())"
            " WHERE tenant_id = $1 AND queue = 'q1'",
            tenant,
        )
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/jobs", params=params, headers=auth)).json()
        assert len(page["jobs"]) <= 7  # capped
        seen += page["jobs"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert sorted(j["id"] for j in seen) == sorted(ids)
    order = [(datetime.fromisoformat(j["timings"]["created_at"]), j["id"]) for j in seen]
    assert order == sorted(order, reverse=True)

    def listed(**params):
        return client.get("/v1/jobs", params={"limit": 100, **params}, headers=auth)

    assert len((await listed(type="a")).json()["jobs"]) == 6
    assert len((await listed(queue="q2")).json()["jobs"]) == 6
    queued = (await listed(status="queued")).json()
    assert len(queued["jobs"]) == 7
    assert queued["next_cursor"]
    assert (await listed(status="dead")).json()["jobs"] == []
    future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await listed(created_after=future)).json()["jobs"] == []
    assert len((await listed(created_before=future)).json()["jobs"]) == 7
    bad = await listed(cursor="not-a-cursor")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "cursor"
    assert (await listed(status="exploded")).status_code == 422


async def test_a_job_cancelled_through_the_api_is_kept_for_the_configured_retention(
    make_client, make_api_key, db
):
    client = await make_client(job_retention_seconds=60)
    auth = bearer(await make_api_key())
    queued = (await client.post("/v1/jobs", json=job_body(), headers=auth)).json()
    assert (await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=auth)).status_code == 200
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT finished_at, purge_after FROM jobs WHERE id = $1", UUID(queued["id"])
        )
    assert row["purge_after"] - row["finished_at"] == timedelta(seconds=60)
