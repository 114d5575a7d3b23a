"""The analyzer API's limits (per key, per address before authentication) and its
production mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.settings import KafkaSettings
from jobline_analyzer.app import create_app
from jobline_analyzer.settings import Settings

KeyMaker = Callable[..., Awaitable[str]]


async def audited(engine: AsyncEngine, tenant: str) -> Any:
    """The one audit entry of ``tenant`` (test_analyzer_live: applying a recommendation)."""
    async with engine.connect() as conn:
        query = text("SELECT * FROM audit_log WHERE tenant_id = :t")
        return (await conn.execute(query, {"t": tenant})).one()


@asynccontextmanager
async def _api(database_url: str, kafka: KafkaSettings, **extra: Any) -> AsyncIterator[Any]:
    settings = Settings(
        database_url=database_url,
        kafka_bootstrap=kafka.kafka_bootstrap,
        topic_prefix=kafka.topic_prefix,
        analyzer_background=False,  # the API alone
        **extra,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://analyzer") as client:
            yield client


async def test_each_key_is_rate_limited_with_retry_after(
    database_url: str, kafka_settings: KafkaSettings, make_api_key: KeyMaker
) -> None:
    async with _api(
        database_url,
        kafka_settings,
        analyzer_rate_limit_per_second=0.1,
        analyzer_rate_limit_burst=3,
    ) as client:
        one = {"Authorization": f"Bearer {await make_api_key(scopes='jobs:read')}"}
        two = {"Authorization": f"Bearer {await make_api_key(scopes='jobs:read')}"}
        codes = [
            (await client.get("/v1/insights/anomalies", headers=one)).status_code for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        refused = await client.get("/v1/insights/anomalies", headers=one)
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await client.get("/v1/insights/anomalies", headers=two)).status_code == 200


async def test_the_address_limit_answers_before_the_key_lookup(
    database_url: str, kafka_settings: KafkaSettings
) -> None:
    async with _api(
        database_url,
        kafka_settings,
        analyzer_address_rate_per_second=0.01,
        analyzer_address_burst=2,
    ) as client:
        bad = {"Authorization": "Bearer jl_nope"}
        codes = [
            (await client.get("/v1/insights/anomalies", headers=bad)).status_code for _ in range(3)
        ]
        assert codes == [401, 401, 429]
        assert (await client.get("/healthz")).status_code == 200


async def test_production_mode_turns_the_docs_off(
    database_url: str, kafka_settings: KafkaSettings
) -> None:
    async with _api(database_url, kafka_settings, env="prod") as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 404
    async with _api(database_url, kafka_settings) as client:
        assert (await client.get("/docs")).status_code == 200
