"""The gateway as a real process (`python -m jobline_gateway`) against this run's servers."""

from __future__ import annotations

import asyncio

import httpx


async def test_the_gateway_process_accepts_reads_and_deduplicates_jobs(stack, make_api_key):
    gateway = stack.start("gateway", env={"JOBLINE_GATEWAY_RATE_LIMIT_BURST": "1000"})
    key = await make_api_key(scopes="jobs:write,jobs:read")
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        assert (await client.get("/v1/jobs")).status_code == 401

        created = await client.post(
            "/v1/jobs", json={"type": "echo", "payload": {"n": 1}}, headers=auth
        )
        assert created.status_code == 201, created.text
        job = created.json()
        fetched = await client.get(f"/v1/jobs/{job['id']}", headers=auth)
        assert fetched.json()["status"] == "queued"

        racing = {**auth, "Idempotency-Key": "e2e-race"}
        responses = await asyncio.gather(
            *(
                client.post("/v1/jobs", json={"type": "echo", "payload": {}}, headers=racing)
                for _ in range(50)
            )
        )
        assert sorted(r.status_code for r in responses) == [200] * 49 + [201]
        assert len({r.json()["id"] for r in responses}) == 1

        batch = await client.post(
            "/v1/jobs/batch",
            json={"jobs": [{"type": "echo", "payload": {"i": i}} for i in range(100)]},
            headers=auth,
        )
        assert batch.status_code == 201
        assert len(batch.json()["jobs"]) == 100

        listed = await client.get("/v1/jobs", params={"limit": 200}, headers=auth)
        assert len(listed.json()["jobs"]) == 102

        metrics = (await client.get("/metrics")).text
        assert 'jobline_gateway_jobs_submitted_total{type="echo"} 102.0' in metrics
    assert gateway.terminate() == 0
