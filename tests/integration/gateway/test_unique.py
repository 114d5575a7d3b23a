"""Unique jobs through the gateway against real PostgreSQL: the 100-way race on one key per
policy, the policies' answers, the key freed by a finished job, batches, and redrive."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx

from jobline.core.states import Claim, Fail, Succeed
from jobline.pg import jobstore
from jobline.pg.db import Database
from tests.integration.gateway.conftest import bearer, count_jobs, job_body, tenant_of

RACERS = 100


def unique_job(key: str, policy: str = "reject", **fields: Any) -> dict[str, Any]:
    return job_body(unique={"key": key, "policy": policy, **fields})


async def race(client: httpx.AsyncClient, key: str, body: dict[str, Any]) -> list[httpx.Response]:
    return list(
        await asyncio.gather(
            *(client.post("/v1/jobs", json=body, headers=bearer(key)) for _ in range(RACERS))
        )
    )


async def unfinished(db: Database, api_key: str, unique_key: str) -> list[UUID]:
    tenant = await tenant_of(db, api_key)
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT id FROM jobs WHERE tenant_id = $1 AND unique_key = $2"
            " AND state IN ('scheduled', 'queued', 'running', 'retrying')",
            tenant,
            unique_key,
        )
    return [r["id"] for r in rows]


async def finish(db: Database, job_id: str, *, succeed: bool) -> None:
    """Run the job's first attempt to success, or to death (max_attempts 1)."""
    async with db.transaction() as conn:
        await jobstore.apply(conn, UUID(job_id), Claim(1, "w1", 30), datetime.now(UTC))
        outcome = (
            Succeed(1, "w1", None) if succeed else Fail(1, "w1", "Boom", "no", retryable=False)
        )
        await jobstore.apply(conn, UUID(job_id), outcome, datetime.now(UTC))


# --- 100 concurrent submissions, one key -------------------------------------------------


async def test_100_concurrent_rejects_create_one_job(client, make_api_key, db):
    key = await make_api_key()
    answers = await race(client, key, unique_job("nightly-report"))
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 409: RACERS - 1}, statuses
    created = next(r for r in answers if r.status_code == 201).json()
    assert created["unique_key"] == "nightly-report"
    for r in answers:
        if r.status_code == 409:
            problem = r.json()
            assert r.headers["content-type"].startswith("application/problem+json")
            assert problem["type"] == "urn:jobline:problem:unique-key-held"
            assert problem["job_id"] == created["id"]
            assert created["id"] in problem["detail"]
            assert r.headers["location"] == f"/v1/jobs/{created['id']}"
            assert problem["errors"][0]["pointer"] == "/unique/key"
    assert await count_jobs(db, key) == 1


async def test_100_concurrent_debounces_create_one_job_and_return_it(client, make_api_key, db):
    key = await make_api_key()
    answers = await race(client, key, unique_job("sync", "debounce", window_seconds=3600))
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 200: RACERS - 1}, statuses
    assert len({r.json()["id"] for r in answers}) == 1
    assert all("idempotent-replayed" not in r.headers for r in answers)
    assert await count_jobs(db, key) == 1


async def test_100_concurrent_replaces_leave_one_unfinished_job(client, make_api_key, db):
    key = await make_api_key()
    answers = await race(client, key, unique_job("reindex", "replace"))
    assert Counter(r.status_code for r in answers) == {201: RACERS}
    ids = {r.json()["id"] for r in answers}
    assert len(ids) == RACERS
    survivors = await unfinished(db, key, "reindex")
    assert len(survivors) == 1
    assert str(survivors[0]) in ids
    assert await count_jobs(db, key, state="cancelled") == RACERS - 1


# --- the policies one at a time ----------------------------------------------------------


async def test_replace_cancels_the_waiting_job_with_a_reason(client, make_api_key):
    key = await make_api_key()
    first = await client.post("/v1/jobs", json=unique_job("k", "replace"), headers=bearer(key))
    second = await client.post("/v1/jobs", json=unique_job("k", "replace"), headers=bearer(key))
    assert (first.status_code, second.status_code) == (201, 201)
    old = (await client.get(f"/v1/jobs/{first.json()['id']}", headers=bearer(key))).json()
    assert old["status"] == "cancelled"
    assert old["metadata"]["cancel_reason"] == f"replaced by job {second.json()['id']}"
    new = (await client.get(f"/v1/jobs/{second.json()['id']}", headers=bearer(key))).json()
    assert (new["status"], new["unique_key"]) == ("queued", "k")


async def test_replace_does_not_replace_a_running_job(client, make_api_key, db):
    key = await make_api_key()
    first = await client.post("/v1/jobs", json=unique_job("k", "replace"), headers=bearer(key))
    async with db.transaction() as conn:
        await jobstore.apply(conn, UUID(first.json()["id"]), Claim(1, "w1", 30), datetime.now(UTC))
    second = await client.post("/v1/jobs", json=unique_job("k", "replace"), headers=bearer(key))
    assert second.status_code == 409
    assert second.json()["job_id"] == first.json()["id"]
    assert "running" in second.json()["detail"]
    assert await count_jobs(db, key) == 1


async def test_debounce_past_the_window_answers_as_reject(client, make_api_key, db):
    key = await make_api_key()
    first = await client.post("/v1/jobs", json=unique_job("k"), headers=bearer(key))
    async with db.connection() as conn:  # created an hour ago
        await conn.execute(
            "UPDATE jobs SET created_at = created_at - interval '1 hour' WHERE id = $1",
            UUID(first.json()["id"]),
        )
    late = await client.post(
        "/v1/jobs", json=unique_job("k", "debounce", window_seconds=60), headers=bearer(key)
    )
    assert late.status_code == 409
    assert late.json()["job_id"] == first.json()["id"]
    inside = await client.post(
        "/v1/jobs", json=unique_job("k", "debounce", window_seconds=7200), headers=bearer(key)
    )
    assert inside.status_code == 200
    assert inside.json()["id"] == first.json()["id"]


async def test_keys_are_per_tenant(client, make_api_key):
    for key in (await make_api_key(), await make_api_key()):
        answer = await client.post("/v1/jobs", json=unique_job("k"), headers=bearer(key))
        assert answer.status_code == 201


async def test_jobs_without_a_key_are_not_unique(client, make_api_key, db):
    key = await make_api_key()
    for _ in range(3):
        answer = await client.post("/v1/jobs", json=job_body(), headers=bearer(key))
        assert answer.status_code == 201
        assert answer.json()["unique_key"] is None
    assert await count_jobs(db, key) == 3


# --- the key is freed when its job finishes ---------------------------------------------


async def test_a_finished_job_frees_its_key(client, make_api_key, db):
    key = await make_api_key()
    ids = []
    for end in ("succeeded", "dead", "cancelled", None):
        answer = await client.post(
            "/v1/jobs", json={**unique_job("k"), "max_attempts": 1}, headers=bearer(key)
        )
        assert answer.status_code == 201, (end, answer.text)
        ids.append(answer.json()["id"])
        held = await client.post("/v1/jobs", json=unique_job("k"), headers=bearer(key))
        assert held.status_code == 409
        if end == "cancelled":
            cancel = await client.post(f"/v1/jobs/{ids[-1]}/cancel", headers=bearer(key))
            assert cancel.json()["status"] == "cancelled"
        elif end is not None:
            await finish(db, ids[-1], succeed=end == "succeeded")
    assert len(set(ids)) == 4
    assert await count_jobs(db, key) == 4
    assert await unfinished(db, key, "k") == [UUID(ids[-1])]


async def test_redrive_of_a_dead_job_whose_key_is_taken_is_409(client, make_api_key, db):
    key = await make_api_key()
    dead = (
        await client.post(
            "/v1/jobs", json={**unique_job("k"), "max_attempts": 1}, headers=bearer(key)
        )
    ).json()
    await finish(db, dead["id"], succeed=False)
    newer = (await client.post("/v1/jobs", json=unique_job("k"), headers=bearer(key))).json()
    redrive = await client.post(f"/v1/jobs/{dead['id']}/redrive", headers=bearer(key))
    assert redrive.status_code == 409
    assert redrive.json()["type"] == "urn:jobline:problem:unique-key-held"
    assert redrive.json()["job_id"] == newer["id"]
    assert (await client.get(f"/v1/jobs/{dead['id']}", headers=bearer(key))).json()[
        "status"
    ] == "dead"
    # Once the newer job finishes, the dead one may take its key back.
    await client.post(f"/v1/jobs/{newer['id']}/cancel", headers=bearer(key))
    again = await client.post(f"/v1/jobs/{dead['id']}/redrive", headers=bearer(key))
    assert again.status_code == 200
    assert again.json()["status"] == "queued"


# --- validation and batches --------------------------------------------------------------


async def test_invalid_unique_fields_are_422_with_a_pointer(client, make_api_key):
    key = await make_api_key()
    cases = [
        ({"key": "k", "policy": "debounce"}, "/unique"),
        ({"key": "k", "policy": "reject", "window_seconds": 3}, "/unique"),
        ({"key": "", "policy": "reject"}, "/unique/key"),
        ({"key": "k", "policy": "sometimes"}, "/unique/policy"),
        ({"key": "k", "policy": "debounce", "window_seconds": 0}, "/unique/window_seconds"),
    ]
    for unique, pointer in cases:
        answer = await client.post("/v1/jobs", json=job_body(unique=unique), headers=bearer(key))
        assert answer.status_code == 422, unique
        assert pointer in [e["pointer"] for e in answer.json()["errors"]], answer.json()
    batch = await client.post(
        "/v1/jobs/batch",
        json={"jobs": [job_body(), job_body(unique={"key": "k", "policy": "debounce"})]},
        headers=bearer(key),
    )
    assert batch.status_code == 422
    assert [e["pointer"] for e in batch.json()["errors"]] == ["/jobs/1/unique"]


async def test_a_batch_with_one_key_twice_is_422_naming_both(client, make_api_key, db):
    key = await make_api_key()
    jobs = [unique_job("a"), job_body(), unique_job("b"), unique_job("a", "replace")]
    answer = await client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=bearer(key))
    assert answer.status_code == 422
    problem = answer.json()
    assert "jobs.0 and jobs.3" in problem["detail"]
    assert sorted(e["pointer"] for e in problem["errors"]) == [
        "/jobs/0/unique/key",
        "/jobs/3/unique/key",
    ]
    assert await count_jobs(db, key) == 0


async def test_a_batch_is_all_or_nothing_and_debounces_per_job(client, make_api_key, db):
    key = await make_api_key()
    held = (await client.post("/v1/jobs", json=unique_job("a"), headers=bearer(key))).json()
    rejected = await client.post(
        "/v1/jobs/batch",
        json={"jobs": [unique_job("b"), job_body(), unique_job("a")]},
        headers=bearer(key),
    )
    assert rejected.status_code == 409
    assert rejected.json()["job_id"] == held["id"]
    assert rejected.json()["errors"][0]["pointer"] == "/jobs/2/unique/key"
    assert await count_jobs(db, key) == 1  # b was not created either
    mixed = await client.post(
        "/v1/jobs/batch",
        json={"jobs": [unique_job("b"), unique_job("a", "debounce", window_seconds=600)]},
        headers=bearer(key),
    )
    assert mixed.status_code == 201
    jobs = mixed.json()["jobs"]
    assert jobs[1]["id"] == held["id"]
    assert jobs[0]["unique_key"] == "b"
    assert await count_jobs(db, key) == 2
    only_existing = await client.post(
        "/v1/jobs/batch",
        json={"jobs": [unique_job("a", "debounce", window_seconds=600)]},
        headers=bearer(key),
    )
    assert only_existing.status_code == 200
    assert only_existing.json()["jobs"][0]["id"] == held["id"]


async def test_idempotency_key_with_a_unique_job_replays(client, make_api_key, db):
    key = await make_api_key()
    headers = {**bearer(key), "Idempotency-Key": "once"}
    first = await client.post("/v1/jobs", json=unique_job("k"), headers=headers)
    again = await client.post("/v1/jobs", json=unique_job("k"), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await count_jobs(db, key) == 1
