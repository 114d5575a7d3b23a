"""The console's workflow pages against real PostgreSQL (no worker: nodes stay where the test
puts them): the list, the graph, the live stream, cancel and node redrive through the forms,
scopes, CSRF and tenant isolation."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from tests.integration.gateway.conftest import bearer
from tests.integration.gateway.console_user import TENANT_SCOPES
from tests.support import new_tenant

NODE = re.compile(r'class="wf-node (\w+)" data-ref="([^"]+)"')
EDGE = re.compile(r'data-edge="([^"]+)"')


def fan(queue: str) -> dict[str, Any]:
    """a and b, then sum after both: a fan-out/fan-in of two."""
    return {
        "jobs": [
            {"ref": "a", "type": "echo", "queue": queue, "payload": {}},
            {"ref": "b", "type": "echo", "queue": queue, "payload": {}},
            {"ref": "sum", "type": "echo", "queue": queue, "payload": {}, "depends_on": ["a", "b"]},
        ]
    }


async def _setup(client, browser, make_api_key, db, scopes: str = TENANT_SCOPES):
    tenant = await new_tenant(db)
    key = await make_api_key(scopes=TENANT_SCOPES, tenant=tenant)
    made = await client.post(
        "/v1/workflows", json=fan(f"wfui{uuid4().hex[:8]}"), headers=bearer(key)
    )
    assert made.status_code == 201, made.text
    user = await browser()
    assert (await user.login(await make_api_key(scopes=scopes, tenant=tenant))).status_code == 303
    return tenant, made.json(), user


async def test_the_list_the_graph_and_the_job_pages_link(client, browser, make_api_key, db):
    _, wf, user = await _setup(client, browser, make_api_key, db)
    listing = await user.page("/ui/workflows")
    assert listing.status_code == 200
    assert f'data-workflow-id="{wf["id"]}"' in listing.text
    assert ">queued 2</span>" in listing.text
    assert ">scheduled 1</span>" in listing.text
    assert 'href="/ui/workflows" class="active"' in listing.text  # in the navigation
    assert wf["id"] not in (await user.page("/ui/workflows?state=succeeded")).text
    page = await user.page(f"/ui/workflows/{wf['id']}")
    assert page.status_code == 200
    assert '<svg class="wf-graph"' in page.text
    assert sorted(NODE.findall(page.text)) == [
        ("queued", "a"),
        ("queued", "b"),
        ("scheduled", "sum"),
    ]
    assert sorted(EDGE.findall(page.text)) == ["a→sum", "b→sum"]
    assert f'data-sse="/ui/workflows/{wf["id"]}/live"' in page.text
    assert 'id="cancel-workflow"' in page.text
    node = next(n for n in wf["nodes"] if n["ref"] == "sum")
    assert f'href="/ui/jobs/{node["job_id"]}"' in page.text
    job_page = await user.page(f"/ui/jobs/{node['job_id']}")
    assert f'href="/ui/workflows/{wf["id"]}"' in job_page.text


async def test_cancel_through_the_form_and_the_stream_ends(client, browser, make_api_key, db):
    _, wf, user = await _setup(client, browser, make_api_key, db)
    refused = await user.client.post(f"/ui/workflows/{wf['id']}/cancel", data={})
    assert refused.status_code == 403  # no CSRF token
    done = await user.post(f"/ui/workflows/{wf['id']}/cancel")
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/workflows/{wf['id']}?notice=cancelled"
    async with db.connection() as conn:
        state = await conn.fetchval("SELECT state FROM workflows WHERE id = $1", wf["id"])
        nodes = await conn.fetch("SELECT state FROM jobs WHERE workflow_id = $1", wf["id"])
    assert state == "cancelled"
    assert {r["state"] for r in nodes} == {"cancelled"}
    page = await user.page(f"/ui/workflows/{wf['id']}?notice=cancelled")
    assert "Workflow cancelled." in page.text
    assert 'id="cancel-workflow"' not in page.text
    assert len(NODE.findall(page.text)) == 3
    assert {s for s, _ in NODE.findall(page.text)} == {"cancelled"}
    # Ended: the stream sends the live part once, then `done`, and closes.
    stream = await asyncio.wait_for(user.client.get(f"/ui/workflows/{wf['id']}/live"), 10)
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert "event: update\n" in stream.text
    assert stream.text.rstrip().endswith("event: done\ndata: cancelled")


async def test_redrive_a_dead_node_from_its_button(client, browser, make_api_key, db):
    _, wf, user = await _setup(client, browser, make_api_key, db)
    # Node a died (as a worker would record it; no worker runs here).
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE jobs SET state = 'dead', attempt = 1, finished_at = now(), last_error = $3,"
            " errors = jsonb_build_array($3::jsonb)"
            " WHERE workflow_id = $1 AND workflow_ref = $2",
            wf["id"],
            "a",
            {
                "attempt": 1,
                "error_class": "KeyError",
                "message": "'image'",
                "finished_at": datetime.now(UTC).isoformat(),
            },
        )
        await conn.execute(
            "UPDATE workflows SET unfinished = unfinished - 1, failed = failed + 1 WHERE id = $1",
            wf["id"],
        )
    page = await user.page(f"/ui/workflows/{wf['id']}")
    assert ("dead", "a") in NODE.findall(page.text)
    assert "KeyError: &#39;image&#39;" in page.text
    assert page.text.count('class="primary redrive-node"') == 1
    assert (await user.post(f"/ui/workflows/{wf['id']}/redrive")).status_code == 422  # no ref
    redriven = await user.post(f"/ui/workflows/{wf['id']}/redrive", ref="a")
    assert redriven.status_code == 303
    async with db.connection() as conn:
        state = await conn.fetchval(
            "SELECT state FROM jobs WHERE workflow_id = $1 AND workflow_ref = 'a'", wf["id"]
        )
    assert state == "queued"
    again = await user.post(f"/ui/workflows/{wf['id']}/redrive", ref="a")
    assert again.status_code == 409  # not dead any more


async def test_another_tenants_workflow_is_not_found_and_reading_is_not_writing(
    client, browser, make_api_key, db
):
    _, wf, reader = await _setup(client, browser, make_api_key, db, scopes="jobs:read")
    page = await reader.page(f"/ui/workflows/{wf['id']}")
    assert page.status_code == 200
    assert 'id="cancel-workflow"' not in page.text  # the key may not
    assert (await reader.post(f"/ui/workflows/{wf['id']}/cancel")).status_code == 403
    stranger = await browser()
    await stranger.login(await make_api_key(scopes=TENANT_SCOPES, tenant=await new_tenant(db)))
    assert wf["id"] not in (await stranger.page("/ui/workflows")).text
    for path in (f"/ui/workflows/{wf['id']}", f"/ui/workflows/{wf['id']}/live"):
        answer = await stranger.page(path)
        assert answer.status_code == 404
        assert "No workflow" in answer.text
    assert (await stranger.post(f"/ui/workflows/{wf['id']}/cancel")).status_code == 404
    async with db.connection() as conn:
        state = await conn.fetchval("SELECT state FROM workflows WHERE id = $1", wf["id"])
    assert state == "running"
