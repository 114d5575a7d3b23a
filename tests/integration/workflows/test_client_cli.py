"""The clients' workflow calls and ``jobline workflows`` against the gateway served in this
process (uvicorn in a thread), real PostgreSQL; no worker: the nodes stay unfinished."""

from __future__ import annotations

import asyncio
import json
import subprocess
from uuid import uuid4

import pytest

from jobline.client import AsyncClient, Client, Conflict, InvalidRequest
from tests.integration.client.conftest import (  # noqa: F401  (fixtures)
    inprocess_gateway,
    serve_gateway,
)
from tests.support import jobline_cli


def cli(url: str, key: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return jobline_cli(url, key, "workflows", *args, stdin=stdin)


def chain(queue: str) -> list[dict[str, object]]:
    return [
        {"ref": "a", "type": "echo", "queue": queue, "payload": {}},
        {"ref": "b", "type": "echo", "queue": queue, "payload": {}, "depends_on": ["a"]},
    ]


async def test_the_clients(inprocess_gateway, make_api_key):  # noqa: F811
    key = await make_api_key()
    queue = f"wfc{uuid4().hex[:8]}"

    def run() -> str:
        with Client(base_url=inprocess_gateway, key=key) as client:
            submitted = client.submit_workflow(chain(queue), idempotency_key="k1")
            again = client.submit_workflow(chain(queue), idempotency_key="k1")
            assert again.id == submitted.id
            assert [n.status.value for n in submitted.nodes] == ["queued", "scheduled"]
            with pytest.raises(InvalidRequest) as caught:
                client.submit_workflow(
                    [{"ref": "x", "type": "echo", "payload": {}, "depends_on": ["x"]}]
                )
            errors = caught.value.problem.errors or []
            assert [e.pointer for e in errors] == ["/jobs/0/depends_on/0"]
            with pytest.raises(Conflict):
                client.redrive_workflow_node(submitted.id, "a")  # not dead
            cancelled = client.cancel_workflow(submitted.id)
            assert cancelled.status.value == "cancelled"
            assert {n.status.value for n in cancelled.nodes} == {"cancelled"}
            return str(submitted.id)

    workflow_id = await asyncio.to_thread(run)
    async with AsyncClient(base_url=inprocess_gateway, key=key) as client:
        read = await client.get_workflow(workflow_id)
    assert read.nodes_unfinished == 0
    assert read.timings.finished_at is not None


async def test_the_cli(inprocess_gateway, make_api_key):  # noqa: F811
    key = await make_api_key()
    queue = f"wfc{uuid4().hex[:8]}"
    body = json.dumps({"jobs": chain(queue), "on_failure": "continue"})
    submitted = await asyncio.to_thread(cli, inprocess_gateway, key, "submit", "-", stdin=body)
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()
    shown = await asyncio.to_thread(cli, inprocess_gateway, key, "show", workflow_id)
    assert shown.returncode == 0, shown.stderr
    assert "running" in shown.stdout
    assert "b " in shown.stdout
    assert "<- a" in shown.stdout
    cancelled = await asyncio.to_thread(
        cli, inprocess_gateway, key, "cancel", workflow_id, "--json"
    )
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    assert json.loads(cancelled.stdout)["on_failure"] == "continue"
    cycle = json.dumps([{"ref": "a", "type": "echo", "payload": {}, "depends_on": ["a"]}])
    refused = await asyncio.to_thread(cli, inprocess_gateway, key, "submit", "-", stdin=cycle)
    assert refused.returncode == 1
    assert "depends_on" in refused.stderr


async def test_the_listing(inprocess_gateway, make_api_key):  # noqa: F811
    """Pages newest first, the state filter, iteration, the CLI; a jobs cursor is refused."""
    key = await make_api_key()
    queue = f"wfc{uuid4().hex[:8]}"

    def run() -> list[str]:
        with Client(base_url=inprocess_gateway, key=key) as client:
            ids = [str(client.submit_workflow(chain(queue)).id) for _ in range(3)]
            client.cancel_workflow(ids[0])
            first = client.list_workflows(limit=2)
            assert [str(w.id) for w in first.workflows] == ids[:0:-1]  # newest first
            assert first.workflows[0].nodes_by_status == {"queued": 1, "scheduled": 1}
            assert first.next_cursor is not None
            second = client.list_workflows(limit=2, cursor=first.next_cursor)
            assert [str(w.id) for w in second.workflows] == [ids[0]]
            assert second.next_cursor is None
            assert second.workflows[0].nodes_by_status == {"cancelled": 2}
            every = [str(w.id) for w in client.iter_workflows(page_size=1)]
            assert every == ids[::-1]
            cancelled = client.list_workflows(status="cancelled")
            assert [str(w.id) for w in cancelled.workflows] == [ids[0]]
            jobs_cursor = client.list_jobs(limit=1).next_cursor
            assert jobs_cursor is not None
            with pytest.raises(InvalidRequest):
                client.list_workflows(cursor=jobs_cursor)
            return ids

    ids = await asyncio.to_thread(run)
    async with AsyncClient(base_url=inprocess_gateway, key=key) as client:
        running = [str(w.id) async for w in client.iter_workflows(status="running")]
    assert running == ids[:0:-1]
    listed = await asyncio.to_thread(cli, inprocess_gateway, key, "list", "--limit", "2")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ids[:0:-1]
    assert "queued 1 scheduled 1" in lines[0]
    as_json = await asyncio.to_thread(
        cli, inprocess_gateway, key, "list", "--status", "cancelled", "--json"
    )
    assert [w["id"] for w in json.loads(as_json.stdout)] == [ids[0]]
