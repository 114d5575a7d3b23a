"""Many replicas on one machine: 2 gateways, 3 relays and 4 workers against one PostgreSQL and
one broker. ``make test-scale`` runs it with 50,000 jobs (JOBLINE_SCALE_JOBS=50000, about
2.5 minutes on two cores); ``make test`` runs the same test with 10,000 jobs, which keeps every
property below under watch for about 40 seconds of the suite's 15-minute budget.

What must hold, whatever the interleaving:
- every job succeeded, and its effect (the example ``send-email`` handler's row, keyed by the
  job id) was recorded exactly once: no job ran twice, none was lost;
- each replica of each service did a non-zero share of the work (submissions, publications,
  executions);
- on ``<prefix>.events`` each job's lifecycle events arrive in order (sequence 1, 2, 3:
  queued, running, succeeded), with no gap and no duplicate.

It prints one JSON line of figures: each replica's share, wall time and rates.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import text

from jobline import db, keystore, migrate, topics
from jobline.apikeys import ALL_SCOPES
from jobline.settings import DatabaseSettings, KafkaSettings
from tests.conftest import with_database
from tests.integration.worker.support import (
    GATEWAY_ENV,
    RELAY_ENV,
    WORKER_ENV,
    Api,
    TopicReader,
    email_effects,
    event_data,
    metric_value,
)
from tests.stack import Stack, running_stack

JOBS = int(os.environ.get("JOBLINE_SCALE_JOBS", "10000"))
GATEWAYS, RELAYS, WORKERS = 2, 3, 4
BATCH = 500
CLIENTS_PER_GATEWAY = 4
CONCURRENCY = 64
DONE_TIMEOUT = 900.0
# Nine service processes share one server's max_connections (100 by default): small pools.
POOL = {"JOBLINE_DB_POOL_SIZE": "3", "JOBLINE_DB_MAX_OVERFLOW": "2"}
# The production lease (the default). WORKER_ENV's 1.5 s lease is for the crash tests: with
# nine processes on two cores a renewal can be that late, the relay then re-queues a running
# job and its handler runs twice (the idempotency key absorbs it, but "once" is what we check).
LEASE = {"JOBLINE_WORKER_LEASE_SECONDS": "30"}


def _metrics(service: Any) -> str:
    with urllib.request.urlopen(service.url + "/metrics", timeout=10) as response:
        return str(response.read().decode())


def _shares(counts: dict[str, int]) -> dict[str, dict[str, float]]:
    total = sum(counts.values()) or 1
    return {k: {"count": v, "share": round(v / total, 3)} for k, v in sorted(counts.items())}


async def _submit_all(apis: list[Api]) -> dict[int, list[str]]:
    """JOBS send-email jobs in batches, CLIENTS_PER_GATEWAY concurrent clients per gateway;
    returns gateway index -> ids it accepted."""
    batches = [list(range(start, min(start + BATCH, JOBS))) for start in range(0, JOBS, BATCH)]
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    accepted: dict[int, list[str]] = defaultdict(list)

    async def client(index: int) -> None:
        api = apis[index]
        while not queue.empty():
            numbers = queue.get_nowait()
            jobs = await api.submit_batch(
                [
                    {
                        "type": "send-email",
                        "queue": "emails",
                        "payload": {"to": f"user{n}@example.com", "subject": f"hello {n}"},
                    }
                    for n in numbers
                ]
            )
            accepted[index] += [j["id"] for j in jobs]

    await asyncio.gather(*(client(g) for g in range(len(apis)) for _ in range(CLIENTS_PER_GATEWAY)))
    return accepted


async def _wait_done(engine: Any, tenant_ids: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + DONE_TIMEOUT
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        async with db.transaction(engine) as conn:
            rows = await conn.execute(
                text("SELECT state, count(*) AS n FROM jobs WHERE id = ANY(:ids) GROUP BY state"),
                {"ids": tenant_ids},
            )
            counts = {str(r.state): int(r.n) for r in rows}
        if counts.get("succeeded", 0) == len(tenant_ids):
            return counts
        if counts.get("dead") or counts.get("cancelled"):
            break
        await asyncio.sleep(1.0)
    raise AssertionError(f"jobs not all succeeded: {counts}")


def _start_replicas(stack: Any) -> tuple[list[Any], list[Any], list[Any]]:
    env_common = {**POOL, "JOBLINE_LOG_LEVEL": "WARNING"}
    gateways = [stack.start("gateway", env={**GATEWAY_ENV, **env_common}) for _ in range(GATEWAYS)]
    relays = [stack.start("relay", env={**RELAY_ENV, **env_common}) for _ in range(RELAYS)]
    worker_args = ("--app", "jobline_worker.examples:worker", "--queues", "emails")
    workers = [
        stack.start(
            "worker",
            *worker_args,
            "--concurrency",
            str(CONCURRENCY),
            env={**WORKER_ENV, **env_common, **LEASE, "JOBLINE_WORKER_ID": f"worker-{i}"},
        )
        for i in range(WORKERS)
    ]
    return gateways, relays, workers


async def _events_per_job(reader: TopicReader, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every lifecycle event of ``ids`` on the events topic, per job, in topic order."""
    wanted = set(ids)
    per_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    position = 0

    def complete(records: list[Any]) -> bool:
        nonlocal position
        for data in event_data(records[position:]):
            if data["job_id"] in wanted:
                per_job[data["job_id"]].append(data)
        position = len(records)
        return len(per_job) == len(wanted) and all(len(v) >= 3 for v in per_job.values())

    await reader.until(complete, timeout=300)
    # Anything published after the third event would be a duplicate or a re-run.
    await asyncio.sleep(1.0)
    await reader.poll()
    complete(reader.records)
    return per_job


async def _attempts_per_worker(engine: Any, ids: list[str]) -> dict[str, int]:
    """worker id -> attempts it ran; fails unless every job ran exactly one attempt."""
    async with db.transaction(engine) as conn:
        rows = await conn.execute(
            text(
                "SELECT worker_id, count(*) AS n, max(attempt) AS a FROM job_attempts"
                " WHERE job_id = ANY(:ids) GROUP BY worker_id"
            ),
            {"ids": ids},
        )
        attempts = {str(r.worker_id): (int(r.n), int(r.a)) for r in rows}
    assert sum(n for n, _ in attempts.values()) == len(ids)  # one attempt per job
    assert {a for _, a in attempts.values()} == {1}
    return {worker: n for worker, (n, _) in attempts.items()}


@dataclass
class Isolated:
    """A database and topic prefix of this test alone: the relays' published count and the
    workers' queue then hold this test's messages only, whatever ran before in the session."""

    engine: Any
    kafka_settings: KafkaSettings
    stack: Stack
    key: str


@pytest.fixture
async def isolated(pg_server_url, kafka_bootstrap, topic_prefix, tmp_path) -> Any:
    name = f"jobline_scale_{uuid4().hex[:10]}"
    await db.create_database(pg_server_url, name)
    url = with_database(pg_server_url, name)
    await asyncio.to_thread(migrate.upgrade, url)
    prefix = f"{topic_prefix}scale"
    env = {
        "JOBLINE_DATABASE_URL": url,
        "JOBLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "JOBLINE_TOPIC_PREFIX": prefix,
        "JOBLINE_ENV": "test",
    }
    engine = db.create_engine(DatabaseSettings(database_url=url, db_pool_size=4))
    try:
        async with db.transaction(engine) as conn:
            _, key = await keystore.create_key(
                conn, tenant_id="scale", name="scale", scopes=ALL_SCOPES
            )
        with running_stack(env, tmp_path) as stack:
            yield Isolated(
                engine,
                KafkaSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix),
                stack,
                key,
            )
    finally:
        await engine.dispose()
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# 50,000 jobs take about 2.5 minutes on two idle cores; more when the machine is shared.
@pytest.mark.timeout(DONE_TIMEOUT + 600)
async def test_gateways_relays_and_workers_share_the_work_and_run_each_job_once(
    isolated: Isolated,
) -> None:
    engine, kafka_settings = isolated.engine, isolated.kafka_settings
    gateways, relays, workers = _start_replicas(isolated.stack)
    apis = [Api(g.url, isolated.key) for g in gateways]
    try:
        events = topics.events_topic(kafka_settings.topic_prefix)
        async with TopicReader(kafka_settings, events) as reader:
            started = time.monotonic()
            accepted = await _submit_all(apis)
            submitted = time.monotonic()
            ids = [i for batch in accepted.values() for i in batch]
            assert len(ids) == len(set(ids)) == JOBS
            assert await _wait_done(engine, ids) == {"succeeded": JOBS}
            done = time.monotonic()
            per_job = await _events_per_job(reader, ids)
    finally:
        for api in apis:
            await api.close()

    # Every job's effect recorded exactly once, by exactly one attempt.
    effects = await email_effects(engine, ids)
    assert Counter(effects.values()) == {1: JOBS}
    worker_counts = await _attempts_per_worker(engine, ids)
    for worker in workers:
        duplicates = metric_value(
            _metrics(worker), "jobline_examples_email_duplicate_effects_total"
        )
        assert duplicates == 0

    # Events: per job exactly queued, running, succeeded, in sequence order.
    out_of_order = {
        job_id: [(d["sequence"], d["state"]) for d in data]
        for job_id, data in per_job.items()
        if [d["sequence"] for d in data] != [1, 2, 3]
        or [d["state"] for d in data] != ["queued", "running", "succeeded"]
    }
    assert out_of_order == {}, f"{len(out_of_order)} jobs, e.g. {list(out_of_order.items())[:3]}"

    # Shares: every replica of every service did some of the work.
    gateway_counts = {f"gateway-{g}": len(accepted[g]) for g in range(GATEWAYS)}
    for g, gateway in enumerate(gateways):
        exported = metric_value(_metrics(gateway), "jobline_gateway_jobs_submitted_total")
        assert exported == len(accepted[g])
    relay_counts = {
        f"relay-{r}": int(metric_value(_metrics(relay), "jobline_relay_published_messages_total"))
        for r, relay in enumerate(relays)
    }
    # Published: one work message and three events per job, and nothing else of this run.
    assert sum(relay_counts.values()) == 4 * JOBS
    for counts, replicas in (
        (gateway_counts, GATEWAYS),
        (relay_counts, RELAYS),
        (worker_counts, WORKERS),
    ):
        assert len(counts) == replicas
        assert all(n > 0 for n in counts.values()), counts

    figures = {
        "jobs": JOBS,
        "replicas": {"gateway": GATEWAYS, "relay": RELAYS, "worker": WORKERS},
        "worker_concurrency": CONCURRENCY,
        "submit_seconds": round(submitted - started, 1),
        "submit_jobs_per_second": round(JOBS / (submitted - started)),
        "wall_seconds": round(done - started, 1),
        "end_to_end_jobs_per_second": round(JOBS / (done - started)),
        "gateway_shares": _shares(gateway_counts),
        "relay_shares_of_messages": _shares(relay_counts),
        "worker_shares": _shares(worker_counts),
        "events_checked": sum(len(v) for v in per_job.values()),
        "cpus": os.cpu_count(),
    }
    print("\nmulti-replica figures: " + json.dumps(figures))
