"""Helpers shared by the integration, e2e and fault tests (and the benchmark's checks).

Jobs are inserted with ``jobstore.insert`` of ``states.submit`` results, exactly what the
gateway's submit does, so relay and worker tests do not depend on the gateway. Topics are read
from the beginning of every partition without a consumer group, so a reader never competes
with the workers under test.
"""

# ruff: noqa: ASYNC109 - polling helpers take a plain deadline in seconds

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from aiokafka import AIOKafkaConsumer, TopicPartition

from jobline.broker import kafka
from jobline.core import cloudevent, topics
from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.job import Job, JobState
from jobline.core.states import submit
from jobline.pg import jobstore, registry
from jobline.pg.db import Database
from jobline.pg.keystore import ensure_tenant
from jobline.pg.queries import SQL
from jobline.settings import KafkaSettings

INSERT_BATCH = 1000

# --- jobs in PostgreSQL ------------------------------------------------------------------


def fresh_queue() -> str:
    return f"q{uuid4().hex[:10]}"


async def new_tenant(db: Database) -> str:
    name = f"t-{uuid4().hex[:10]}"
    async with db.connection() as conn:
        await ensure_tenant(conn, name)
    return name


def make_job(
    tenant: str,
    type: str = "echo",
    queue: str = "default",
    payload: dict[str, Any] | None = None,
    **changes: Any,
) -> Job:
    """A new job (not yet submitted): short fixed backoff, three attempts by default."""
    now = datetime.now(UTC) - timedelta(milliseconds=5)
    fields: dict[str, Any] = {
        "id": uuid4(),
        "tenant_id": tenant,
        "type": type,
        "queue": queue,
        "state": JobState.QUEUED,
        "payload": payload if payload is not None else {"n": 1},
        "created_at": now,
        "run_at": now,
        "max_attempts": 3,
        "backoff": BackoffPolicy(BackoffKind.FIXED, 0.2, 0.2),
    }
    fields.update(changes)
    return Job(**fields)


async def declare_queues(db: Database, queues: Iterable[str]) -> None:
    """Declare ``queues`` (as an operator would): the relay publishes only declared ones."""
    async with db.transaction() as conn:
        await registry.declare_missing_queues(conn, queues, "tests")


async def insert_jobs(db: Database, jobs: Iterable[Job], batch: int = INSERT_BATCH) -> list[UUID]:
    """Submit ``jobs`` as the gateway would, ``batch`` per statement, on declared queues."""
    ids: list[UUID] = []
    pending = list(jobs)
    await declare_queues(db, {j.queue for j in pending})
    for start in range(0, len(pending), batch):
        chunk = pending[start : start + batch]
        now = datetime.now(UTC)
        async with db.connection() as conn:
            await jobstore.insert(conn, [submit(j, now) for j in chunk])
        ids += [j.id for j in chunk]
    return ids


async def submit_many(
    db: Database, tenant: str, queue: str, count: int, **changes: Any
) -> list[UUID]:
    """``count`` echo jobs on ``queue``."""
    return await insert_jobs(db, (make_job(tenant, queue=queue, **changes) for _ in range(count)))


async def job_of(db: Database, job_id: UUID | str) -> Job:
    job_id = UUID(str(job_id))
    async with db.transaction() as conn:
        job = (await jobstore.lock_many(conn, [job_id])).get(job_id)
    assert job is not None
    return job


async def states_of(db: Database, ids: Iterable[UUID]) -> dict[UUID, str]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT id, state FROM jobs WHERE id = ANY($1)", list(ids))
    return {r["id"]: r["state"] for r in rows}


async def attempts_of(db: Database, job_id: UUID | str) -> list[Any]:
    """The job's attempts as the API lists them (the running one from the job's row)."""
    async with db.connection() as conn:
        return list(await SQL.fetch(conn, "job_attempts", job_id=UUID(str(job_id))))


async def attempt_spans(db: Database, ids: list[UUID]) -> list[tuple[datetime, datetime]]:
    """(started_at, finished_at) of the jobs' succeeded attempts, from the attempts' own
    timestamps (what an operator would check), never the test's clock."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT started_at, finished_at FROM job_attempts WHERE job_id = ANY($1::uuid[])"
            " AND outcome = 'succeeded'",
            ids,
        )
    return [(r["started_at"], r["finished_at"]) for r in rows]


async def outbox_rows_of(db: Database, job_ids: list[UUID]) -> int:
    async with db.connection() as conn:
        return int(
            await conn.fetchval("SELECT count(*) FROM outbox WHERE job_id = ANY($1)", job_ids)
        )


# What a worker leaves behind for each finished job, written directly (a steady load for the
# retention tests and `python -m bench.retention` without running handlers): the succeeded
# job row due for purging after ``keep`` seconds, ``attempts`` ended attempts, and the
# submission's Idempotency-Key expiring after ``keep`` seconds too.
_FINISHED_JOBS = """
WITH new_jobs AS (
    INSERT INTO jobs (tenant_id, type, queue, state, payload, attempt, max_attempts, backoff,
                      timeout_seconds, started_at, finished_at, sequence, result, purge_after)
    SELECT $1, 'echo', 'default', 'succeeded', jsonb_build_object('n', i, 'pad', $5::text),
           $3, 5, '{"kind": "fixed", "base_seconds": 1, "max_seconds": 1}'::jsonb, 30, now(),
           now(), 3, '{"ok": true}'::jsonb, now() + make_interval(secs => $4)
    FROM generate_series(1, $2) AS i
    RETURNING id
),
new_attempts AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error)
    SELECT id, a, 'w-1', now(), now(), CASE WHEN a = $3 THEN 'succeeded' ELSE 'failed' END,
           CASE WHEN a = $3 THEN NULL ELSE '{"error_class": "E", "message": "boom"}'::jsonb END
    FROM new_jobs, generate_series(1, $3) AS a
)
INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_ids, expires_at)
SELECT $1, gen_random_uuid()::text, 'h', ARRAY[id], now() + make_interval(secs => $4)
FROM new_jobs
"""


async def insert_finished_jobs(
    db: Database, tenant: str, count: int, *, keep: float, attempts: int = 2, pad: int = 200
) -> None:
    """``count`` succeeded jobs (with attempts and keys) purgeable ``keep`` seconds from now."""
    async with db.connection() as conn:
        await conn.execute(_FINISHED_JOBS, tenant, count, attempts, keep, "x" * pad)


# --- waiting -----------------------------------------------------------------------------


async def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail with the last."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


async def wait_states(
    db: Database, ids: Iterable[UUID], state: str | set[str], timeout: float = 30.0
) -> dict[UUID, str]:
    wanted = {state} if isinstance(state, str) else state
    ids = list(ids)

    async def check() -> dict[UUID, str] | None:
        states = await states_of(db, ids)
        return states if len(states) == len(ids) and set(states.values()) <= wanted else None

    try:
        result: dict[UUID, str] = await wait_for(check, timeout, 0.2)
        return result
    except AssertionError:
        counts = Counter((await states_of(db, ids)).values())
        raise AssertionError(f"jobs not all {wanted} within {timeout}s: {dict(counts)}") from None


JOBLINE = str(Path(sys.executable).parent / "jobline")


def jobline_cli(
    url: str, key: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``jobline ARGS`` against the gateway at ``url`` as ``key``."""
    return subprocess.run(
        [JOBLINE, *args],
        env={**os.environ, "JOBLINE_GATEWAY_URL": url, "JOBLINE_API_KEY": key},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def http_status(url: str) -> int | None:
    """The status of GET ``url``, or None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def metric_value(metrics_text: str, name: str) -> float:
    """Sum of a metric's samples in Prometheus text (0 if absent)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- topics ------------------------------------------------------------------------------


def work_topic(settings: KafkaSettings, queue: str) -> str:
    return topics.work_topic(settings.topic_prefix, queue)


class TopicReader:
    """Reads one topic from the beginning of every partition (no group); keeps every record
    and counts keys."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.records: list[Any] = []
        self.counts: Counter[str] = Counter()
        self.values: list[tuple[str, bytes, float]] = []  # key, value, local receive time
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        await kafka.ensure_topics(self.settings, [self.topic])
        consumer = kafka.make_consumer(self.settings, group_id=None, max_poll_records=5000)
        await consumer.start()
        partitions = None
        deadline = time.monotonic() + 10
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                await consumer._client.force_metadata_update()
        assert partitions, f"no partitions for {self.topic}"
        assignment = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> list[Any]:
        """Read what is there now; returns the new records."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        received = time.monotonic()
        new = [r for records in batches.values() for r in records]
        for record in new:
            key = record.key.decode() if record.key is not None else ""
            self.counts[key] += 1
            self.values.append((key, record.value, received))
        self.records += new
        return new

    def seen(self, ids: list[UUID]) -> int:
        return sum(1 for i in ids if self.counts[str(i)] > 0)

    def duplicates(self, ids: list[UUID]) -> int:
        return sum(max(self.counts[str(i)] - 1, 0) for i in ids)

    async def wait_for(self, ids: list[UUID], timeout: float) -> None:
        """Poll until every id was seen at least once, or fail naming how many are missing."""
        deadline = time.monotonic() + timeout
        while self.seen(ids) < len(ids):
            if time.monotonic() > deadline:
                missing = len(ids) - self.seen(ids)
                raise AssertionError(f"{missing} of {len(ids)} jobs missing from {self.topic}")
            await self.poll()

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


def event_data(records: Iterable[Any], kind: str = "jobline.job.") -> list[dict[str, Any]]:
    """The data of the events of ``kind`` among ``records``: job lifecycle events by default
    (the events topic also carries workflows' own, ``jobline.workflow.*``, which name no job)."""
    events = (cloudevent.decode(r.value) for r in records)
    return [cloudevent.data_of(e) for e in events if e.get_type().startswith(kind)]


# --- services as processes ----------------------------------------------------------------

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


async def email_effects(db: Database, keys: Iterable[str]) -> dict[str, int]:
    """idempotency key -> deliveries, for the keys that have an effect row."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT idempotency_key, deliveries FROM jobline_examples.email_effects"
            " WHERE idempotency_key = ANY($1)",
            list(keys),
        )
    return {r["idempotency_key"]: int(r["deliveries"]) for r in rows}
