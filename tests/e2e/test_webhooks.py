"""Webhooks end to end: gateway, relay and worker as processes, a receiver process that
verifies every delivery's signature with the ``standardwebhooks`` library.

The deployment's address policy here is production's with one exception: only 127.0.0.1 is
allowed (``JOBLINE_WEBHOOK_ALLOWED_NETWORKS``), so other loopback and private addresses are
refused when saved and when delivering.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from jobline.client import AsyncClient, InvalidRequest
from jobline.core.webhooks import signing
from jobline.pg import webhookstore
from tests.integration.gateway.conftest import tenant_of
from tests.support import GATEWAY_ENV, RELAY_ENV, metric_value, start_worker, wait_for
from tests.webhook_receiver import Receiver

ADDRESSES = {"JOBLINE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}
RELAY = {
    **RELAY_ENV,
    **ADDRESSES,
    # Three attempts 0.1-0.3 s apart; an endpoint is disabled after two failed deliveries.
    "JOBLINE_WEBHOOK_MAX_ATTEMPTS": "3",
    "JOBLINE_WEBHOOK_RETRY_BASE_SECONDS": "0.1",
    "JOBLINE_WEBHOOK_RETRY_MAX_SECONDS": "0.3",
    "JOBLINE_WEBHOOK_DISABLE_AFTER": "2",
    "JOBLINE_WEBHOOK_POLL_INTERVAL_SECONDS": "0.2",
}


@pytest.fixture
def receiver() -> Any:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture
async def services(stack, make_api_key, db) -> AsyncIterator[dict[str, Any]]:
    gateway = stack.start("gateway", env={**GATEWAY_ENV, **ADDRESSES})
    relay = stack.start("relay", env=RELAY)
    start_worker(stack)
    key = await make_api_key(scopes="jobs:write,jobs:read,webhooks:manage")
    async with db.connection() as conn:
        started = await conn.fetchval("SELECT clock_timestamp()")
    yield {"gateway": gateway, "relay": relay, "key": key}
    async with db.connection() as conn:  # later tests' relays must not retry these
        await conn.execute("DELETE FROM webhook_endpoints WHERE created_at >= $1", started)


async def _records(receiver: Receiver, path: str, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        found = await asyncio.to_thread(receiver.records, path)
        return found if len(found) >= count else None

    records: list[dict[str, Any]] = await wait_for(enough, timeout=60)
    return records


async def test_deliveries_are_signed_retried_disabled_replayed_and_refused(services, receiver, db):
    async with AsyncClient(base_url=services["gateway"].url, key=services["key"]) as api:
        # Three endpoints: one that answers, one that fails twice per message, one that is down.
        paths = {"ok": f"/ok/{uuid4().hex}", "flaky": f"/fail/2/{uuid4().hex}"}
        paths["down"] = f"/down/{uuid4().hex}"
        ok = await api.create_webhook(receiver.url(paths["ok"]), ["jobline.job.*"])
        flaky = await api.create_webhook(receiver.url(paths["flaky"]), ["jobline.job.succeeded"])
        down = await api.create_webhook(receiver.url(paths["down"]), ["jobline.job.succeeded"])
        for name, created in (("ok", ok), ("flaky", flaky), ("down", down)):
            receiver.secret(paths[name], created.secret)
            assert created.secret.startswith("whsec_")

        jobs = [await api.submit("echo", {"n": n}) for n in range(2)]
        for job in jobs:
            await api.wait(job.id, timeout=60)

        await _signed_lifecycle(receiver, paths["ok"], [str(job.id) for job in jobs])
        await _retried(api, receiver, paths["flaky"], flaky.id)
        await _disabled_then_replayed(api, receiver, down)
        await _refused(api, receiver, db, services["key"], paths["ok"])

    metrics = await asyncio.to_thread(_get, services["relay"].url + "/metrics")
    assert metric_value(metrics, 'jobline_webhook_attempts_total{result="success"}') >= 12
    assert metric_value(metrics, 'jobline_webhook_attempts_total{result="refused"}') >= 1
    assert metric_value(metrics, "jobline_webhook_endpoints_disabled_total") == 1
    assert metric_value(metrics, 'jobline_webhook_deliveries_finished_total{outcome="failed"}') >= 2


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def _signed_lifecycle(receiver: Receiver, path: str, job_ids: list[str]) -> None:
    """Every lifecycle event of the jobs, each verified by the receiver's library."""
    records = await _records(receiver, path, 3 * len(job_ids))
    assert all(r["verified"] for r in records), [r["error"] for r in records]
    seen = {(r["event"]["subject"], r["event"]["type"]) for r in records}
    for job_id in job_ids:
        for state in ("queued", "started", "succeeded"):
            assert (job_id, f"jobline.job.{state}") in seen


async def _retried(api: AsyncClient, receiver: Receiver, path: str, webhook_id: Any) -> None:
    """The flaky receiver: three attempts per delivery with one webhook-id, then 200."""
    by_id: dict[str, list[int]] = {}
    for record in await _records(receiver, path, 6):
        assert record["verified"]
        by_id.setdefault(record["headers"]["webhook-id"], []).append(record["status"])
    assert sorted(by_id.values()) == [[500, 500, 200], [500, 500, 200]]
    log = (await api.webhook_deliveries(webhook_id)).deliveries
    assert {(d.status.value, d.attempts, d.last_status_code) for d in log} == {
        ("succeeded", 3, 200)
    }


async def _disabled_then_replayed(api: AsyncClient, receiver: Receiver, down: Any) -> None:
    """Both deliveries to the one that is down fail for good and disable it; fixed and
    enabled again, a replay delivers (with the delivery's own webhook-id)."""

    async def disabled() -> Any:
        endpoint = await api.get_webhook(down.id)
        return endpoint if not endpoint.enabled else None

    endpoint = await wait_for(disabled, timeout=60)
    assert "2 deliveries in a row failed" in (endpoint.disabled_reason or "")
    failed = (await api.webhook_deliveries(down.id, status="failed")).deliveries
    assert [(d.attempts, d.last_error) for d in failed] == [(3, "HTTP 500")] * 2

    fixed = f"/ok/{uuid4().hex}"
    receiver.secret(fixed, down.secret)
    await api.update_webhook(down.id, {"url": receiver.url(fixed), "enabled": True})
    replayed = await api.replay_webhook_delivery(down.id, failed[0].id)
    assert (replayed.status.value, replayed.attempts) == ("pending", 0)
    [again] = await _records(receiver, fixed, 1)
    assert again["verified"]
    assert again["headers"]["webhook-id"] == str(failed[0].id)

    async def delivered() -> Any:
        found = await api.get_webhook_delivery(down.id, failed[0].id)
        return found if found.status.value == "succeeded" else None

    await wait_for(delivered, timeout=30)


async def _refused(api: AsyncClient, receiver: Receiver, db: Any, key: str, ok_path: str) -> None:
    # Refused when saved: a loopback address other than the allowed 127.0.0.1.
    for url in (f"http://127.0.0.2:{receiver.port}/ok", "http://169.254.169.254/"):
        with pytest.raises(InvalidRequest, match="refused"):
            await api.create_webhook(url, ["*"])
    # Refused when delivering: a row the gateway never checked (as if saved before the
    # policy changed), for the same tenant; the delivery log says why.
    async with db.connection() as conn:
        sneaky = await webhookstore.SQL.fetchval(
            conn,
            "insert_endpoint",
            tenant_id=await tenant_of(db, key),
            url=f"http://127.0.0.2:{receiver.port}{ok_path}",
            description="",
            event_types=["jobline.job.succeeded"],
            secret=signing.generate_secret(),
        )
    before = len(await asyncio.to_thread(receiver.records, ok_path))
    job = await api.submit("echo", {"n": 3})
    await api.wait(job.id, timeout=60)

    async def refused() -> Any:
        page = await api.webhook_deliveries(sneaky, status="failed")
        return page.deliveries or None

    [refusal] = await wait_for(refused, timeout=60)
    assert refusal.last_error == "refused: 127.0.0.2 is a loopback address"
    assert refusal.last_status_code is None
    # The endpoint at 127.0.0.1 got the new job's events; nothing reached 127.0.0.2.
    after = await _records(receiver, ok_path, before + 3)
    assert {r["headers"]["host"] for r in after} == {f"127.0.0.1:{receiver.port}"}
