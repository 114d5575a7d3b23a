"""The sync client's webhook calls and ``jobline webhooks`` against the gateway served in
this process (uvicorn in a thread), real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any
from uuid import uuid4

import pytest

from jobline.client import Client, Forbidden, InvalidRequest, NotFound
from jobline.pg import webhookstore
from jobline.pg.webhookstore import NewDelivery
from tests.integration.client.conftest import (  # noqa: F401  (fixtures)
    inprocess_gateway,
    serve_gateway,
)
from tests.support import jobline_cli

URL = "https://hooks.example.com/jobline"


def cli(url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return jobline_cli(url, key, "webhooks", *args)


async def test_the_sync_client(inprocess_gateway, make_api_key):  # noqa: F811
    key = await make_api_key(scopes="webhooks:manage")
    reader = await make_api_key(scopes="jobs:read")

    def run() -> None:
        with Client(base_url=inprocess_gateway, key=key) as client:
            created = client.create_webhook(URL, ["jobline.job.dead"], description="pager")
            assert created.secret.startswith("whsec_")
            assert [w.id for w in client.iter_webhooks(page_size=1)] == [created.id]
            updated = client.update_webhook(created.id, {"enabled": False})
            assert (updated.enabled, updated.disabled_reason) == (False, "disabled by a PATCH")
            rotated = client.rotate_webhook_secret(created.id)
            assert rotated.secret != created.secret
            assert list(client.iter_webhook_deliveries(created.id)) == []
            with pytest.raises(InvalidRequest, match="refused"):
                client.create_webhook("http://127.0.0.1:1/", ["*"])
            client.delete_webhook(created.id)
            with pytest.raises(NotFound):
                client.get_webhook(created.id)
        with Client(base_url=inprocess_gateway, key=reader) as client, pytest.raises(Forbidden):
            client.list_webhooks()

    await asyncio.to_thread(run)


async def test_the_cli(inprocess_gateway, make_api_key, db):  # noqa: F811
    key = await make_api_key(scopes="webhooks:manage")
    created = await asyncio.to_thread(
        cli, inprocess_gateway, key, "create", URL, "--events", "jobline.job.succeeded"
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("whsec_")  # the secret alone on stdout
    listed = await asyncio.to_thread(cli, inprocess_gateway, key, "list", "--json")
    [webhook] = json.loads(listed.stdout)
    assert "secret" not in webhook
    event_id = f"{uuid4()}:4"
    async with db.transaction() as conn:
        await webhookstore.insert_deliveries(
            conn, [NewDelivery(webhook["id"], event_id, "jobline.job.succeeded", "{}")]
        )
    log = await asyncio.to_thread(cli, inprocess_gateway, key, "deliveries", webhook["id"])
    assert log.returncode == 0, log.stderr
    assert event_id in log.stdout
    assert "pending" in log.stdout
    deliveries: list[dict[str, Any]] = json.loads(
        (
            await asyncio.to_thread(
                cli, inprocess_gateway, key, "deliveries", webhook["id"], "--json"
            )
        ).stdout
    )
    replayed = await asyncio.to_thread(
        cli, inprocess_gateway, key, "replay", webhook["id"], deliveries[0]["id"]
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"replaying {deliveries[0]['id']}" in replayed.stdout
    refused = await asyncio.to_thread(cli, inprocess_gateway, key, "create", "http://10.0.0.1/")
    assert refused.returncode == 1
    assert "refused" in refused.stderr
    deleted = await asyncio.to_thread(cli, inprocess_gateway, key, "delete", webhook["id"])
    assert deleted.returncode == 0, deleted.stderr
    missing = await asyncio.to_thread(cli, inprocess_gateway, key, "get", webhook["id"])
    assert missing.returncode == 1
