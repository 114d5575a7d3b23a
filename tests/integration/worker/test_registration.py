"""A worker records its job types and queues at start; the gateway then admits, lists and
checks them (in-process worker runtime and gateway, real PostgreSQL and broker)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic import BaseModel, Field

from jobline.pg import registry
from jobline_worker import Worker
from jobline_worker.context import JobContext
from jobline_worker.runtime import Runtime
from jobline_worker.settings import Settings
from tests.integration.gateway.conftest import bearer, tenant_of


class Invoice(BaseModel):
    customer: str
    cents: int = Field(ge=0)


def app_for(suffix: str, tenant: str) -> Worker:
    app = Worker()

    @app.job(f"invoice-{suffix}", queue=f"billing{suffix}", model=Invoice, tenants=[tenant])
    async def invoice(ctx: JobContext, payload: Invoice) -> None:
        return None

    @app.job(f"ping-{suffix}")
    async def ping(ctx: JobContext, payload: dict[str, Any]) -> None:
        return None

    return app


async def test_a_starting_worker_registers_its_types_and_the_gateway_uses_them(
    database_url, kafka_settings, make_client, make_api_key, db
):
    key = await make_api_key(scopes="jobs:write,jobs:read")
    tenant = await tenant_of(db, key)
    suffix = uuid4().hex[:8]
    app = app_for(suffix, tenant)
    settings = Settings(
        database_url=database_url,
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        topic_prefix=kafka_settings.topic_prefix,
        topic_partitions=2,
    )
    gateway = await make_client(gateway_accept_undeclared=False)
    invoice_type = f"invoice-{suffix}"
    before = await gateway.post(
        "/v1/jobs", json={"type": invoice_type, "payload": {}}, headers=bearer(key)
    )
    assert before.status_code == 422, before.text  # nobody registered it yet

    # Serves its own queue only: the suite's "default" group may still be rebalancing after
    # other tests' workers, and joining it is not what this test is about.
    runtime = Runtime(settings, app, [f"billing{suffix}"], 2)
    await runtime.start()
    try:
        async with db.connection() as conn:
            stored = await registry.load(conn)
        types = {t.record.name: t for t in stored.types}
        assert types[invoice_type].record.queue == f"billing{suffix}"
        assert types[invoice_type].record.allowed_tenants == frozenset({tenant})
        assert types[invoice_type].source == "worker"
        assert types[invoice_type].registered_by == runtime.worker_id
        assert types[f"ping-{suffix}"].record.payload_schema is None
        assert f"billing{suffix}" in {q.declaration.name for q in stored.queues}

        listed = await gateway.get("/v1/job-types", headers=bearer(key))
        mine = {t["name"]: t for t in listed.json()["job_types"]}
        assert mine[invoice_type]["payload_schema"] == Invoice.model_json_schema()
        bad = await gateway.post(
            "/v1/jobs",
            json={"type": invoice_type, "payload": {"customer": "c", "cents": -1}},
            headers=bearer(key),
        )
        assert bad.status_code == 422, bad.text
        assert [e["pointer"] for e in bad.json()["errors"]] == ["/payload/cents"]
        good = await gateway.post(
            "/v1/jobs",
            json={"type": invoice_type, "payload": {"customer": "c", "cents": 5}},
            headers=bearer(key),
        )
        assert good.status_code == 201, good.text
        assert good.json()["queue"] == f"billing{suffix}"
    finally:
        await runtime.stop()

    # A restart with the same handlers writes nothing (no NOTIFY churn on every start).
    async with db.transaction() as conn:
        written = await registry.register_job_types(
            conn, [spec.record() for spec in app], source="worker", registered_by="again"
        )
    assert written == []
