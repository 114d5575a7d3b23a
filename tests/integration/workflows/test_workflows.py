"""Workflows end to end: results passed along a chain, an exactly-once fan-in, the failure
policies, cancel, redrive, child jobs atomic with their parent's outcome, the graph's 422s
and the Idempotency-Key."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from jobline.core.retention import BatchLimits
from jobline.pg import purge
from tests.integration.gateway.conftest import bearer
from tests.integration.workflows.conftest import (
    FAILING,
    RUNS,
    SEEN,
    nodes_by_ref,
    wait_workflow,
)
from tests.support import TopicReader, event_data, wait_for

FAN_OUT = 200


def node(ref: str, type: str, queue: str, payload: dict[str, Any], *parents: str) -> dict[str, Any]:
    return {
        "ref": ref,
        "type": type,
        "queue": queue,
        "payload": payload,
        "depends_on": list(parents),
    }


async def submit(http: Any, key: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await http.post("/v1/workflows", json=body, headers={**bearer(key), **headers})
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_chain_passes_each_result_to_the_next(  # noqa: PLR0917 - fixtures
    client, make_api_key, queue, relay, run_worker, kafka_settings
):
    key = await make_api_key()
    steps = 100
    jobs = [node("s0", "wf-add", queue, {"n": 1})] + [
        node(f"s{i}", "wf-add", queue, {"n": 1}, f"s{i - 1}") for i in range(1, steps)
    ]
    submitted = await submit(client, key, {"jobs": jobs})
    assert submitted["status"] == "running"
    states = {n["ref"]: n["status"] for n in submitted["nodes"]}
    assert states["s0"] == "queued"
    assert states["s1"] == "scheduled"
    async with run_worker(queue):
        done = await wait_workflow(client, key, submitted["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    nodes = nodes_by_ref(done)
    # Each step adds 1 to its parent's result: step i's result is i + 1.
    assert [nodes[f"s{i}"]["result"] for i in range(steps)] == list(range(1, steps + 1))
    assert SEEN[nodes["s5"]["job_id"]] == {"s4": {"state": "succeeded", "result": 5, "error": None}}
    assert done["timings"]["finished_at"] is not None
    assert done["nodes_unfinished"] == 0
    # Its lifecycle events: started, then succeeded, keyed by the workflow's id.
    async with TopicReader(kafka_settings, f"{kafka_settings.topic_prefix}.events") as events:
        records = await events.until(
            lambda rs: sum(1 for r in rs if r.key == submitted["id"].encode()) >= 2, 20
        )
    mine = event_data(
        (r for r in records if r.key == submitted["id"].encode()), kind="jobline.workflow."
    )
    assert [d["state"] for d in mine] == ["running", "succeeded"]


async def test_a_fan_in_runs_once_after_every_parent_with_all_results(
    client, make_api_key, queue, relay, run_worker
):
    key = await make_api_key()
    jobs = [node(f"p{i}", "wf-add", queue, {"n": i}) for i in range(FAN_OUT)]
    jobs.append(node("sum", "wf-add", queue, {"n": 0}, *(f"p{i}" for i in range(FAN_OUT))))
    submitted = await submit(client, key, {"jobs": jobs})
    async with run_worker(queue, concurrency=64):
        done = await wait_workflow(client, key, submitted["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    nodes = nodes_by_ref(done)
    fan_in = nodes["sum"]
    assert RUNS[fan_in["job_id"]] == 1
    assert fan_in["result"] == sum(range(FAN_OUT))
    assert len(SEEN[fan_in["job_id"]]) == FAN_OUT
    last_parent = max(nodes[f"p{i}"]["timings"]["finished_at"] for i in range(FAN_OUT))
    assert fan_in["timings"]["started_at"] >= last_parent


async def test_the_cancel_policy_cancels_the_dependants_with_the_reason(
    client, make_api_key, queue, relay, run_worker
):
    key = await make_api_key()
    FAILING.add(queue + "bad")
    jobs = [
        node("ok", "wf-add", queue, {"n": 1}),
        node("bad", "wf-add", queue, {"fail_key": queue + "bad"}),
        node("child", "wf-add", queue, {}, "ok", "bad"),
        node("grandchild", "wf-add", queue, {}, "child"),
    ]
    submitted = await submit(client, key, {"jobs": jobs})
    async with run_worker(queue):
        done = await wait_workflow(client, key, submitted["id"], {"succeeded", "failed"})
    nodes = nodes_by_ref(done)
    assert done["status"] == "failed"
    assert nodes["bad"]["status"] == "dead"
    assert nodes["child"]["status"] == "cancelled"
    assert nodes["child"]["cancel_reason"] == "workflow: parent 'bad' ended dead"
    assert nodes["grandchild"]["status"] == "cancelled"
    assert RUNS[nodes["child"]["job_id"]] == 0
    assert done["nodes_failed"] == 3
    assert done["nodes_unfinished"] == 0

    # Redrive the failed node: the dependants its failure cancelled run once it succeeds.
    FAILING.discard(queue + "bad")
    response = await client.post(
        f"/v1/workflows/{submitted['id']}/nodes/bad/redrive", headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    again = nodes_by_ref(response.json())
    assert response.json()["status"] == "running"
    assert again["child"]["status"] == "scheduled"
    assert again["child"]["cancel_reason"] is None
    async with run_worker(queue):
        done = await wait_workflow(client, key, submitted["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    assert nodes_by_ref(done)["grandchild"]["result"] == 1  # ok's 1 + bad's 0


async def test_the_continue_policy_runs_dependants_with_the_failure_recorded(
    client, make_api_key, queue, relay, run_worker
):
    key = await make_api_key()
    FAILING.add(queue + "bad")
    jobs = [
        node("ok", "wf-add", queue, {"n": 2}),
        node("bad", "wf-add", queue, {"fail_key": queue + "bad"}),
        node("after", "wf-add", queue, {"n": 1}, "ok", "bad"),
    ]
    submitted = await submit(client, key, {"jobs": jobs, "on_failure": "continue"})
    async with run_worker(queue):
        done = await wait_workflow(client, key, submitted["id"], {"succeeded", "failed"})
    nodes = nodes_by_ref(done)
    assert done["status"] == "failed"
    assert done["nodes_failed"] == 1
    assert nodes["after"]["status"] == "succeeded"
    assert nodes["after"]["result"] == 3
    seen = SEEN[nodes["after"]["job_id"]]
    assert seen["bad"]["state"] == "dead"
    assert seen["bad"]["error"]["error_class"] == "NonRetryable"


async def test_cancel_stops_every_unfinished_node(client, make_api_key, queue, relay, run_worker):
    key = await make_api_key()
    jobs = [
        node("slow", "wf-wait", queue, {"seconds": 30}),
        node("quick", "wf-add", queue, {"n": 1}),
        node("next", "wf-add", queue, {}, "slow", "quick"),
        node("last", "wf-add", queue, {}, "next"),
    ]
    submitted = await submit(client, key, {"jobs": jobs})
    async with run_worker(queue):
        slow_id = nodes_by_ref(submitted)["slow"]["job_id"]
        await wait_for(lambda: RUNS[slow_id] == 1, 20)
        response = await client.post(f"/v1/workflows/{submitted['id']}/cancel", headers=bearer(key))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        done = await wait_workflow(client, key, submitted["id"], {"cancelled"})
        await wait_for(lambda: _all_ended(client, key, submitted["id"]), 20)
    nodes = nodes_by_ref(await wait_workflow(client, key, submitted["id"], {"cancelled"}))
    assert nodes["slow"]["status"] == "cancelled"
    assert nodes["next"]["status"] == "cancelled"
    assert nodes["last"]["status"] == "cancelled"
    assert RUNS[nodes["next"]["job_id"]] == 0
    assert done["status"] == "cancelled"
    again = await client.post(f"/v1/workflows/{submitted['id']}/cancel", headers=bearer(key))
    assert again.status_code == 200


async def _all_ended(http: Any, key: str, workflow_id: str) -> bool:
    body = (await http.get(f"/v1/workflows/{workflow_id}", headers=bearer(key))).json()
    return bool(body["timings"]["finished_at"]) and body["nodes_unfinished"] == 0


async def test_children_are_enqueued_with_their_parents_success_only(  # noqa: PLR0917
    client, db, make_api_key, queue, relay, run_worker
):
    key = await make_api_key()
    ok = await client.post(
        "/v1/jobs",
        json={"type": "wf-spawn", "queue": queue, "payload": {"queue": queue}},
        headers=bearer(key),
    )
    crash = await client.post(
        "/v1/jobs",
        json={
            "type": "wf-spawn",
            "queue": queue,
            "payload": {"queue": queue, "crash": True},
            "max_attempts": 1,
        },
        headers=bearer(key),
    )
    async with run_worker(queue):
        parent = await _job_state(client, key, ok.json()["id"], "succeeded")
        await _job_state(client, key, crash.json()["id"], "dead")
        children = [UUID(c) for c in parent["result"]]
        for child in children:
            await _job_state(client, key, str(child), "succeeded")
    async with db.connection() as conn:
        spawned = await conn.fetch(
            "SELECT id, metadata->>'parent_job_id' AS parent FROM jobs"
            " WHERE metadata->>'parent_job_id' = ANY($1::text[])",
            [ok.json()["id"], crash.json()["id"]],
        )
    assert sorted(r["id"] for r in spawned) == sorted(children)
    assert {r["parent"] for r in spawned} == {ok.json()["id"]}


async def _job_state(http: Any, key: str, job_id: str, state: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body: dict[str, Any] = (await http.get(f"/v1/jobs/{job_id}", headers=bearer(key))).json()
        return body if body["status"] == state else None

    result: dict[str, Any] = await wait_for(check, 30, interval=0.2)
    return result


async def test_a_handlers_children_can_wait_for_each_other(
    client, make_api_key, queue, relay, run_worker
):
    key = await make_api_key()
    parent = await client.post(
        "/v1/jobs",
        json={"type": "wf-spawn-fan", "queue": queue, "payload": {"queue": queue}},
        headers=bearer(key),
    )
    async with run_worker(queue):
        done = await _job_state(client, key, parent.json()["id"], "succeeded")
        callback = await _job_state(client, key, done["result"], "succeeded")
    # Its five siblings' results (0..4) by their ids, plus its own 100.
    assert callback["result"] == 110
    assert len(SEEN[callback["id"]]) == 5
    assert RUNS[callback["id"]] == 1


async def test_cycles_and_unknown_refs_are_refused_with_a_pointer(client, make_api_key):
    key = await make_api_key()
    cycle = [
        {"ref": "a", "type": "echo", "payload": {}, "depends_on": ["c"]},
        {"ref": "b", "type": "echo", "payload": {}, "depends_on": ["a"]},
        {"ref": "c", "type": "echo", "payload": {}, "depends_on": ["b"]},
    ]
    response = await client.post("/v1/workflows", json={"jobs": cycle}, headers=bearer(key))
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["pointer"] == "/jobs/0/depends_on"
    assert "cycle" in problem["errors"][0]["message"]
    unknown = [{"ref": "a", "type": "echo", "payload": {}, "depends_on": ["nope"]}]
    response = await client.post("/v1/workflows", json={"jobs": unknown}, headers=bearer(key))
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "jobs.0.depends_on.0",
            "location": "body",
            "pointer": "/jobs/0/depends_on/0",
            "message": "unknown ref 'nope'",
        }
    ]


async def test_a_workflow_is_idempotent_with_its_key(client, db, make_api_key, queue):
    key = await make_api_key()
    body = {"jobs": [node("a", "echo", queue, {}), node("b", "echo", queue, {}, "a")]}
    first = await client.post(
        "/v1/workflows", json=body, headers={**bearer(key), "Idempotency-Key": "wf-1"}
    )
    again = await client.post(
        "/v1/workflows", json=body, headers={**bearer(key), "Idempotency-Key": "wf-1"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    async with db.connection() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE workflow_id = $1", UUID(first.json()["id"])
        )
    assert count == 2
    other = await client.post(
        "/v1/workflows",
        json={"jobs": [node("x", "echo", queue, {})]},
        headers={**bearer(key), "Idempotency-Key": "wf-1"},
    )
    assert other.status_code == 422


async def test_a_finished_workflow_is_purged_after_its_nodes(client, db, make_api_key, queue):
    key = await make_api_key()
    body = {"jobs": [node("a", "echo", queue, {}), node("b", "echo", queue, {}, "a")]}
    submitted = await submit(client, key, body)
    workflow_id = UUID(submitted["id"])
    await client.post(f"/v1/workflows/{workflow_id}/cancel", headers=bearer(key))
    limits = BatchLimits(initial=500, minimum=1, maximum=500, target_seconds=5)
    purger = purge.Purger(limits, round_budget_seconds=60, pause_seconds=0)
    await purger.round(purge.relay_purges(db))
    async with db.connection() as conn:  # its nodes' retention has not run out: both stay
        assert await conn.fetchval("SELECT count(*) FROM workflows WHERE id = $1", workflow_id)
        await conn.execute(
            "UPDATE jobs SET purge_after = now() - interval '1 second' WHERE workflow_id = $1",
            workflow_id,
        )
    await purger.round(purge.relay_purges(db))
    async with db.connection() as conn:
        left = await conn.fetchval(
            "SELECT (SELECT count(*) FROM workflows WHERE id = $1)"
            " + (SELECT count(*) FROM jobs WHERE workflow_id = $1)",
            workflow_id,
        )
    assert left == 0
