"""Helpers shared by the worker's integration, e2e and fault tests."""

# ruff: noqa: ASYNC109 - polling helpers take a plain deadline in seconds

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.broker import kafka
from jobline.core import cloudevent as events
from jobline.core import topics
from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.states import Due, Job, JobState, submit
from jobline.pg import db, jobstore, outbox
from jobline.pg.keystore import ensure_tenant
from jobline.settings import KafkaSettings


async def new_tenant(engine: AsyncEngine) -> str:
    name = f"t-{uuid4().hex[:10]}"
    async with db.transaction(engine) as conn:
        await ensure_tenant(conn, name)
    return name


def make_job(
    tenant: str, type: str, queue: str, payload: dict[str, Any] | None = None, **kw: Any
) -> Job:
    now = datetime.now(UTC) - timedelta(milliseconds=5)
    fields: dict[str, Any] = {
        "id": uuid4(),
        "tenant_id": tenant,
        "type": type,
        "queue": queue,
        "state": JobState.QUEUED,
        "payload": payload or {},
        "created_at": now,
        "run_at": now,
        "max_attempts": 3,
        "backoff": BackoffPolicy(BackoffKind.FIXED, 0.2, 0.2),
    }
    fields.update(kw)
    return Job(**fields)


async def insert_jobs(engine: AsyncEngine, jobs: Iterable[Job], batch: int = 500) -> list[UUID]:
    """Submit ``jobs`` with jobstore.insert (jobs rows + outbox rows)."""
    ids = []
    pending = list(jobs)
    for start in range(0, len(pending), batch):
        chunk = pending[start : start + batch]
        now = datetime.now(UTC)
        async with db.transaction(engine) as conn:
            await jobstore.insert(conn, [submit(j, now) for j in chunk])
        ids += [j.id for j in chunk]
    return ids


class Pump:
    """A minimal stand-in for the outbox relay, limited to the given jobs' rows.

    Publishes due work rows (flipping scheduled/retrying jobs to queued, as the relay does),
    drops every other row of those jobs, and runs until stopped.
    """

    def __init__(self, engine: AsyncEngine, settings: KafkaSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.job_ids: set[UUID] = set()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Pump:
        self.producer = kafka.make_producer(self.settings)
        await self.producer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.producer.stop()

    async def _run(self) -> None:
        while True:
            if self.job_ids:
                await self.once()
            await asyncio.sleep(0.05)

    async def once(self) -> int:
        ids = list(self.job_ids)
        async with db.transaction(self.engine) as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, topic, key, value, job_id FROM outbox"
                        " WHERE available_at <= now() AND job_id = ANY(:ids)"
                        " ORDER BY available_at, id FOR UPDATE SKIP LOCKED"
                    ),
                    {"ids": ids},
                )
            ).all()
            sends = []
            for row in rows:
                if not row.topic.startswith(topics.WORK_PREFIX):
                    continue
                job = await jobstore.lock(conn, row.job_id)
                if job is not None and job.state in (JobState.SCHEDULED, JobState.RETRYING):
                    await jobstore.apply(conn, job.id, Due(), datetime.now(UTC))
                sends.append(
                    await self.producer.send(
                        topics.resolve(self.settings.topic_prefix, row.topic),
                        key=row.key.encode() if row.key else None,
                        value=bytes(row.value),
                    )
                )
            await asyncio.gather(*sends)
            await outbox.delete(conn, [r.id for r in rows])
        return len(rows)


async def job_of(engine: AsyncEngine, job_id: UUID) -> Job:
    async with db.transaction(engine) as conn:
        job = await jobstore.lock(conn, job_id)
    assert job is not None
    return job


async def states_of(engine: AsyncEngine, ids: Iterable[UUID]) -> dict[UUID, str]:
    async with db.transaction(engine) as conn:
        rows = await conn.execute(
            text("SELECT id, state FROM jobs WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )
        return {UUID(str(r.id)): str(r.state) for r in rows}


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.1
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")


async def wait_states(
    engine: AsyncEngine, ids: Iterable[UUID], state: str | set[str], timeout: float = 30.0
) -> dict[UUID, str]:
    wanted = {state} if isinstance(state, str) else state
    ids = list(ids)

    async def check() -> dict[UUID, str] | None:
        states = await states_of(engine, ids)
        return states if len(states) == len(ids) and set(states.values()) <= wanted else None

    try:
        result: dict[UUID, str] = await wait_for(check, timeout, 0.2)
        return result
    except AssertionError:
        states = await states_of(engine, ids)
        counts: dict[str, int] = {}
        for s in states.values():
            counts[s] = counts.get(s, 0) + 1
        raise AssertionError(f"jobs not all {wanted} within {timeout}s: {counts}") from None


async def attempts_of(engine: AsyncEngine, job_id: UUID) -> list[Any]:
    async with db.transaction(engine) as conn:
        rows = await conn.execute(
            text(
                "SELECT attempt, worker_id, started_at, finished_at, outcome, error"
                " FROM job_attempts WHERE job_id = :id ORDER BY attempt"
            ),
            {"id": job_id},
        )
        return list(rows.all())


class TopicReader:
    """Reads a topic from the beginning (no group), accumulating records."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.records: list[Any] = []

    async def __aenter__(self) -> TopicReader:
        await kafka.ensure_topics(self.settings, [self.topic])
        self.consumer: AIOKafkaConsumer = kafka.make_consumer(
            self.settings, self.topic, group_id=None
        )
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> list[Any]:
        batches = await self.consumer.getmany(timeout_ms=200, max_records=5000)
        new = [r for rs in batches.values() for r in rs]
        self.records += new
        return new

    async def until(
        self, predicate: Callable[[list[Any]], bool], timeout: float = 30.0
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                count = len(self.records)
                raise AssertionError(f"{self.topic}: condition not met; {count} records")
            await self.poll()
        return self.records


def dlq_bodies(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def event_data(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [events.data_of(events.decode(r.value)) for r in records]


# --- services as processes -----------------------------------------------------------

EXAMPLES_APP = "jobline_worker.examples:worker"

# Short leases and group timings, so crash recovery takes seconds in tests.
WORKER_ENV = {
    "JOBLINE_WORKER_LEASE_SECONDS": "1.5",
    "JOBLINE_WORKER_SHUTDOWN_GRACE_SECONDS": "2",
    "JOBLINE_WORKER_COMMIT_INTERVAL_SECONDS": "0.2",
    "JOBLINE_WORKER_KAFKA_SESSION_TIMEOUT_MS": "1000",
    "JOBLINE_WORKER_KAFKA_HEARTBEAT_INTERVAL_MS": "200",
    "JOBLINE_LOG_LEVEL": "WARNING",
}
GATEWAY_ENV = {
    "JOBLINE_GATEWAY_RATE_LIMIT_PER_SECOND": "100000",
    "JOBLINE_GATEWAY_RATE_LIMIT_BURST": "100000",
    "JOBLINE_LOG_LEVEL": "WARNING",
}
RELAY_ENV = {"JOBLINE_LEASE_RESCUE_INTERVAL_SECONDS": "0.3", "JOBLINE_LOG_LEVEL": "WARNING"}


def start_worker(
    stack: Any, *args: str, env: dict[str, str] | None = None, wait: bool = True
) -> Any:
    return stack.start(
        "worker",
        "--app",
        EXAMPLES_APP,
        "--queues",
        "default,emails",
        *args,
        env={**WORKER_ENV, **(env or {})},
        wait=wait,
    )


class Api:
    """The gateway over HTTP with one tenant's key."""

    def __init__(self, url: str, key: str) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def submit(self, type: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
        body = {"type": type, "payload": payload, **fields}
        response = await self.client.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def submit_batch(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = await self.client.post("/v1/jobs/batch", json={"jobs": jobs})
        assert response.status_code == 201, response.text
        return list(response.json()["jobs"])

    async def job(self, job_id: Any) -> dict[str, Any]:
        response = await self.client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def attempts(self, job_id: Any) -> list[dict[str, Any]]:
        response = await self.client.get(f"/v1/jobs/{job_id}/attempts")
        assert response.status_code == 200, response.text
        return list(response.json()["attempts"])

    async def post(self, job_id: Any, action: str) -> dict[str, Any]:
        response = await self.client.post(f"/v1/jobs/{job_id}/{action}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_status(self, job_id: Any, status: str, timeout: float = 30.0) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["status"] == status else None

        try:
            job: dict[str, Any] = await wait_for(check, timeout, 0.1)
            return job
        except AssertionError:
            raise AssertionError(f"job {job_id} not {status}: {await self.job(job_id)}") from None


async def email_effects(engine: AsyncEngine, keys: Iterable[str]) -> dict[str, int]:
    """idempotency key -> deliveries, for the keys that have an effect row."""
    async with db.transaction(engine) as conn:
        rows = await conn.execute(
            text(
                "SELECT idempotency_key, deliveries FROM jobline_examples.email_effects"
                " WHERE idempotency_key = ANY(:keys)"
            ),
            {"keys": list(keys)},
        )
        return {str(r.idempotency_key): int(r.deliveries) for r in rows}


def metric_value(metrics_text: str, name: str) -> float:
    """Sum of a metric's samples in Prometheus text (0 if absent)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total
