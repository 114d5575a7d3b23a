"""``/v1/job-types/{type}/limits``: a tenant's own limits of a job type through the API.

That workers start jobs under them is tests/integration/worker/test_limit_overrides.py;
the clients and ``jobline limits`` are at the end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from jobline.client import Client, NotFound
from jobline.pg.db import Database
from tests.integration.client.conftest import (  # noqa: F401  (fixtures)
    inprocess_gateway,
    serve_gateway,
)
from tests.integration.gateway.conftest import MakeClient, bearer, tenant_of
from tests.support import jobline_cli


async def test_a_tenant_sets_reads_and_removes_its_own_limits(
    make_client: MakeClient, make_api_key, db: Database
) -> None:
    client = await make_client()
    key = await make_api_key(scopes="jobs:read,policies:write")
    url = "/v1/job-types/reports/monthly.v2/limits"  # a type name may hold "/" and "."
    assert (await client.get(url, headers=bearer(key))).status_code == 404
    body = {"concurrency": {"max": 3, "key": "customer_id"}, "rate": {"limit": "100/min"}}
    put = await client.put(url, json=body, headers=bearer(key))
    assert put.status_code == 200, put.text
    shown = put.json()
    assert shown["type"] == "reports/monthly.v2"
    assert shown["concurrency"] == {"max": 3, "key": "customer_id"}
    assert shown["rate"] == {"limit": "100/min", "key": None}
    assert (await client.get(url, headers=bearer(key))).json() == shown
    # Another tenant sees none of it.
    other = await make_api_key(scopes="jobs:read")
    assert (await client.get(url, headers=bearer(other))).status_code == 404
    async with db.connection() as conn:
        actions = await conn.fetch(
            "SELECT action FROM audit_log WHERE target = $1 ORDER BY at",
            f"{await tenant_of(db, key)}/reports/monthly.v2",
        )
    assert [a["action"] for a in actions] == ["limits.set"]
    assert (await client.delete(url, headers=bearer(key))).status_code == 204
    assert (await client.get(url, headers=bearer(key))).status_code == 404
    assert (await client.delete(url, headers=bearer(key))).status_code == 404


async def test_bad_limits_are_422_naming_the_field(make_client: MakeClient, make_api_key) -> None:
    client = await make_client()
    key = await make_api_key(scopes="jobs:read,policies:write")
    url = "/v1/job-types/send-email/limits"
    cases = [
        ({"concurrency": {"max": 0}}, "concurrency.max"),
        ({"rate": {"limit": "ten a second"}}, "rate.limit"),
        ({"rate": {"limit": "0/s"}}, "rate.limit"),
        ({"concurrency": {"max": 2, "key": "*"}}, "concurrency.key"),
        ({"rate": {"limit": "5/s", "key": "*"}}, "rate.key"),
        ({"rate": {"key": "customer_id"}}, "rate.limit"),
        ({"concurrency": {"max": True}}, "concurrency.max"),
        ({"burst": 5}, "burst"),
    ]
    for body, field in cases:
        response = await client.put(url, json=body, headers=bearer(key))
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        fields = [e["field"] for e in response.json()["errors"]]
        assert any(field in f for f in fields), (body, fields)
    assert (await client.get(url, headers=bearer(key))).status_code == 404  # nothing stored


async def test_changing_limits_needs_policies_write(make_client: MakeClient, make_api_key) -> None:
    client = await make_client()
    reader = await make_api_key(scopes="jobs:read,jobs:write")
    url = "/v1/job-types/send-email/limits"
    response = await client.put(url, json={"concurrency": {"max": 1}}, headers=bearer(reader))
    assert response.status_code == 403
    assert (await client.delete(url, headers=bearer(reader))).status_code == 403


async def test_the_cli_sets_shows_and_removes_limits(inprocess_gateway, make_api_key) -> None:  # noqa: F811
    key = await make_api_key(scopes="jobs:read,policies:write")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return jobline_cli(inprocess_gateway, key, "limits", *args)

    def run() -> None:
        done = cli("set", "mail/send", "--concurrency", "3", "--rate", "10/s", "--rate-key", "to")
        assert done.returncode == 0, done.stderr
        assert "at most 3 running; 10/s starts per to" in done.stdout
        shown = cli("get", "mail/send", "--json")
        assert json.loads(shown.stdout)["concurrency"] == {"max": 3, "key": None}
        bad = cli("set", "mail/send", "--rate", "fast")
        assert bad.returncode == 1
        assert "rate" in bad.stderr
        assert cli("set", "mail/send", "--rate-key", "to").returncode == 2  # usage
        assert cli("delete", "mail/send").returncode == 0
        assert cli("get", "mail/send").returncode == 1  # none of its own: 404
        with Client(base_url=inprocess_gateway, key=key) as client, pytest.raises(NotFound):
            client.get_limits("mail/send")

    await asyncio.to_thread(run)
