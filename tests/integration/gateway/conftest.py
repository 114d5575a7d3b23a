"""The gateway in-process (httpx over ASGI) against this run's real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from jobline.pg import db
from jobline_gateway.app import create_app
from jobline_gateway.settings import Settings

# High enough that only the rate-limit tests ever see a 429.
UNLIMITED = {"gateway_rate_limit_per_second": 1e6, "gateway_rate_limit_burst": 10**6}

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def job_body(**changes: Any) -> dict[str, Any]:
    return {"type": "email.send", "payload": {"to": "a@example.com"}, **changes}


@pytest.fixture
def gateway_settings(database_url, kafka_bootstrap, topic_prefix) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings(
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            topic_prefix=topic_prefix,
            **{**UNLIMITED, **overrides},
        )

    return make


@pytest.fixture
async def make_client(gateway_settings) -> AsyncIterator[MakeClient]:
    """``await make_client(**settings_overrides)``: a client of a fresh app (lifespan run)."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> httpx.AsyncClient:
            app = create_app(gateway_settings(**overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
            )

        yield make


@pytest.fixture
async def client(make_client):
    return await make_client()


async def count_jobs(engine, tenant_key_or_id: str, **where: Any) -> int:
    """Jobs of the tenant owning an API key (or of a tenant id)."""
    tenant = await tenant_of(engine, tenant_key_or_id)
    conditions = "".join(f" AND {column} = :{column}" for column in where)
    async with db.transaction(engine) as conn:
        return int(
            (
                await conn.execute(
                    text(f"SELECT count(*) FROM jobs WHERE tenant_id = :tenant{conditions}"),
                    {"tenant": tenant, **where},
                )
            ).scalar_one()
        )


async def tenant_of(engine, key_or_tenant: str) -> str:
    if not key_or_tenant.startswith("jl_"):
        return key_or_tenant
    prefix = key_or_tenant.split("_")[1]
    async with db.transaction(engine) as conn:
        return str(
            (
                await conn.execute(
                    text("SELECT tenant_id FROM api_keys WHERE prefix = :p"), {"p": prefix}
                )
            ).scalar_one()
        )
