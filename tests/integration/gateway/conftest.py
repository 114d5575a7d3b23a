"""The gateway in-process (httpx over ASGI) against this run's real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from jobline.core import apikeys
from jobline.pg.db import Database
from jobline_gateway.app import create_app
from jobline_gateway.catalog import Catalog
from jobline_gateway.settings import Settings
from tests.integration.gateway.console_user import Browser

# High enough that only the rate-limit tests ever see a 429.
UNLIMITED = {
    "gateway_rate_limit_per_second": 1e6,
    "gateway_rate_limit_burst": 10**6,
    "gateway_address_rate_per_second": 1e6,
    "gateway_address_burst": 10**7,
    "quota_submissions_per_second": 1e6,
    "quota_submission_burst": 10**7,
}
# The suite submits made-up job types on made-up queues; the registry's own tests
# (test_registry.py) turn this off.
OPEN_REGISTRY = {"gateway_accept_undeclared": True}
# How long an app's catalog may take to start listening (one connection and a LISTEN).
LIVE_TIMEOUT = 10.0


class GatewayClient(httpx.AsyncClient):
    """A client of one in-process gateway, which tests may inspect (``client.app``)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
        self.app = app

    @property
    def catalog(self) -> Catalog:
        catalog: Catalog = self.app.state.catalog
        return catalog


MakeClient = Callable[..., Awaitable[GatewayClient]]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def job_body(**changes: Any) -> dict[str, Any]:
    return {"type": "email.send", "payload": {"to": "a@example.com"}, **changes}


@pytest.fixture
def gateway_settings(database_url, kafka_bootstrap, topic_prefix) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base = {
            "database_url": database_url,
            "kafka_bootstrap": kafka_bootstrap,
            "topic_prefix": topic_prefix,
        }
        return Settings(**{**base, **UNLIMITED, **OPEN_REGISTRY, **overrides})

    return make


async def wait_live(catalog: Catalog) -> None:
    """Until the catalog hears changes, so it serves keys and policies from memory (the
    steady state of a running gateway; before that every lookup reads the database)."""
    deadline = time.monotonic() + LIVE_TIMEOUT
    while not catalog.live:
        assert time.monotonic() < deadline, "the gateway's catalog did not start listening"
        await asyncio.sleep(0.01)


@pytest.fixture
async def make_client(gateway_settings) -> AsyncIterator[MakeClient]:
    """``await make_client(**settings_overrides)``: a client of a fresh app (lifespan run,
    its catalog listening)."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> GatewayClient:
            app = create_app(gateway_settings(**overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            client: GatewayClient = await stack.enter_async_context(GatewayClient(app))
            await wait_live(client.catalog)
            return client

        yield make


@pytest.fixture
async def client(make_client: MakeClient) -> GatewayClient:
    return await make_client()


async def count_jobs(db: Database, tenant_key_or_id: str, **where: Any) -> int:
    """Jobs of the tenant owning an API key (or of a tenant id), with column = value filters."""
    tenant = await tenant_of(db, tenant_key_or_id)
    conditions = "".join(f" AND {column} = ${n}" for n, column in enumerate(where, start=2))
    async with db.connection() as conn:
        count = await conn.fetchval(
            f"SELECT count(*) FROM jobs WHERE tenant_id = $1{conditions}", tenant, *where.values()
        )
    return int(count)


async def tenant_of(db: Database, key_or_tenant: str) -> str:
    """The tenant of an API key's plaintext; anything else is taken as a tenant id."""
    if not key_or_tenant.startswith("jl_"):
        return key_or_tenant
    prefix = apikeys.prefix_of(key_or_tenant)
    async with db.connection() as conn:
        tenant = await conn.fetchval("SELECT tenant_id FROM api_keys WHERE prefix = $1", prefix)
    assert tenant is not None, f"no key with prefix {prefix}"
    return str(tenant)


async def key_id_of(db: Database, key: str) -> Any:
    """The id of the API key whose plaintext is ``key``."""
    async with db.connection() as conn:
        key_id = await conn.fetchval(
            "SELECT id FROM api_keys WHERE prefix = $1", apikeys.prefix_of(key)
        )
    assert key_id is not None
    return key_id


@pytest.fixture
async def browser(client: GatewayClient) -> AsyncIterator[Callable[[], Awaitable[Browser]]]:
    """``await browser()``: a console user with a fresh cookie jar on the test's gateway."""
    opened: list[GatewayClient] = []

    async def make() -> Browser:
        jar = GatewayClient(client.app)
        opened.append(jar)
        return Browser(jar)

    yield make
    for jar in opened:
        await jar.aclose()
