"""A workflow's fan-in under crashes: 1,000 parents and one callback, while workers and the
relay are SIGKILLed mid-run. The callback is released once, after the last parent, and
receives all 1,000 results (docs/workflows.md says why it cannot be released twice)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from tests.support import GATEWAY_ENV, RELAY_ENV, Api, attempts_of, job_of, start_worker, wait_for

PARENTS = 1000


async def _succeeded(db: Any, workflow_id: str) -> int:
    async with db.connection() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE workflow_id = $1 AND state = 'succeeded'",
            UUID(workflow_id),
        )
    return int(count)


async def test_a_fan_in_of_1000_runs_once_with_every_result_through_sigkills(
    stack, db, make_api_key
):
    relay = stack.start("relay", env=RELAY_ENV)
    gateway = stack.start("gateway", env=GATEWAY_ENV)
    api = Api(gateway.url, await make_api_key())
    fixed = {"kind": "fixed", "base_seconds": 0.2, "max_seconds": 0.2}
    try:
        first = start_worker(stack, "--concurrency", "64")
        jobs: list[dict[str, Any]] = [
            {
                "ref": f"p{i}",
                "type": "sleep",
                "payload": {"seconds": 0.1},
                "backoff": fixed,
                "max_attempts": 10,
            }
            for i in range(PARENTS)
        ]
        jobs.append(
            {
                "ref": "sum",
                "type": "collect",
                "payload": {},
                "depends_on": [f"p{i}" for i in range(PARENTS)],
            }
        )
        response = await api.client.post("/v1/workflows", json={"jobs": jobs})
        assert response.status_code == 201, response.text
        workflow = response.json()
        callback = next(n["job_id"] for n in workflow["nodes"] if n["ref"] == "sum")

        await wait_for(lambda: _at_least(db, workflow["id"], 150), 60, 0.1)
        first.kill()  # SIGKILL mid-run: its claimed parents' leases must expire
        relay.kill()  # and the relay with them: unpublished outbox rows wait in PostgreSQL
        relay = stack.start("relay", env=RELAY_ENV)
        second = start_worker(stack, "--concurrency", "64")
        await wait_for(lambda: _at_least(db, workflow["id"], 500), 60, 0.1)
        second.kill()
        start_worker(stack, "--concurrency", "64")

        async def done() -> dict[str, Any] | None:
            body: dict[str, Any] = (await api.client.get(f"/v1/workflows/{workflow['id']}")).json()
            return body if body["status"] != "running" else None

        final = await wait_for(done, 120, 0.5)
    finally:
        await api.close()
    assert final["status"] == "succeeded", final["nodes_failed"]
    nodes = {n["ref"]: n for n in final["nodes"]}
    fan_in = nodes["sum"]
    assert fan_in["result"]["parents"] == fan_in["result"]["succeeded"] == PARENTS
    assert fan_in["result"]["sum"] == pytest.approx(0.1 * PARENTS)  # every parent's "slept"
    # Released once and run once: submitted (1), released (2), started (3), succeeded (4).
    job = await job_of(db, callback)
    assert job.sequence == 4, job.sequence
    assert [a["outcome"] for a in await attempts_of(db, callback)] == ["succeeded"]
    last_parent = max(nodes[f"p{i}"]["timings"]["finished_at"] for i in range(PARENTS))
    assert fan_in["timings"]["started_at"] >= last_parent
    # Some parents really were caught by the kills (their first attempt's lease expired).
    async with db.connection() as conn:
        rescued = await conn.fetchval(
            "SELECT count(DISTINCT a.job_id) FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
            " WHERE j.workflow_id = $1 AND a.outcome = 'lease_expired'",
            UUID(workflow["id"]),
        )
    assert rescued > 0


async def _at_least(db: Any, workflow_id: str, count: int) -> bool:
    return await _succeeded(db, workflow_id) >= count
