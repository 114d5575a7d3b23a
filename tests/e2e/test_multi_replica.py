"""Many replicas on one machine: 2 gateways, 3 relays and 4 workers against one PostgreSQL and
one broker. ``make test-scale`` runs it with 50,000 jobs (JOBLINE_SCALE_JOBS=50000, about
75 seconds on two cores, 2026-12-07); ``make test`` runs the same test with 10,000 jobs, which
keeps every property below under watch for about 40 seconds of the suite's 15-minute budget.

What must hold, whatever the interleaving:
- every job succeeded, and its effect (the example ``send-email`` handler's row, keyed by the
  job id) was recorded exactly once: no job ran twice, none was lost;
- each replica of each service did a non-zero share of the work (submissions, publications,
  executions);
- on ``<prefix>.events`` each job has exactly its three lifecycle events (sequence 1, 2, 3:
  queued, running, succeeded), no gap, no duplicate;
- and they arrive in that order on the topic. Before migration 0003 this failed for a few
  jobs in ten thousand (two relays claimed a job's "running" and "succeeded" rows in
  different SKIP LOCKED batches and published the later first); since then the relay
  publishes a job's row only when no older row of that job remains.

The run happens once per module (fixture ``run``); each property is its own test. It prints
one JSON line of figures: each replica's share, wall time, rates, and events out of order.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from jobline.core import topics
from jobline.core.apikeys import ALL_SCOPES
from jobline.pg import db, keystore, migrate
from jobline.settings import DatabaseSettings, KafkaSettings
from tests.conftest import broker_tuning, with_database
from tests.stack import Stack, running_stack
from tests.support import (
    GATEWAY_ENV,
    RELAY_ENV,
    WORKER_ENV,
    Api,
    TopicReader,
    event_data,
    metric_value,
)

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
    """JOBS send-email jobs in batches dealt round-robin to the gateways (as a load balancer
    would), CLIENTS_PER_GATEWAY concurrent clients each; returns gateway index -> ids."""
    batches = [list(range(start, min(start + BATCH, JOBS))) for start in range(0, JOBS, BATCH)]
    queues: list[asyncio.Queue[list[int]]] = [asyncio.Queue() for _ in apis]
    for n, batch in enumerate(batches):
        queues[n % len(apis)].put_nowait(batch)
    accepted: dict[int, list[str]] = defaultdict(list)

    async def client(index: int) -> None:
        api, queue = apis[index], queues[index]
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


async def _wait_done(pool: asyncpg.Pool, ids: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + DONE_TIMEOUT
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        rows = await pool.fetch(
            "SELECT state::text AS state, count(*) AS n FROM jobs"
            " WHERE id = ANY($1::uuid[]) GROUP BY state",
            ids,
        )
        counts = {str(r["state"]): int(r["n"]) for r in rows}
        if counts.get("succeeded", 0) == len(ids):
            return counts
        if counts.get("dead") or counts.get("cancelled"):
            break
        await asyncio.sleep(1.0)
    raise AssertionError(f"jobs not all succeeded: {counts}")


async def _effects(pool: asyncpg.Pool, ids: list[str]) -> dict[str, int]:
    """idempotency key (job id) -> deliveries of the example send-email handler."""
    rows = await pool.fetch(
        "SELECT idempotency_key, deliveries FROM jobline_examples.email_effects"
        " WHERE idempotency_key = ANY($1::text[])",
        ids,
    )
    return {str(r["idempotency_key"]): int(r["deliveries"]) for r in rows}


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


@dataclass
class Run:
    """What one multi-replica run produced, for the property tests below."""

    ids: list[str]
    effects: dict[str, int]
    worker_attempts: dict[str, tuple[int, int]]  # worker id -> (attempts, highest attempt no.)
    per_job: dict[str, list[dict[str, Any]]]  # job id -> its events in topic order
    gateway_counts: dict[str, int]
    gateway_exported: dict[str, float]
    relay_counts: dict[str, int]
    duplicate_effects: float
    figures: dict[str, Any]


@pytest.fixture(scope="module")
async def isolated(
    pg_server_url, kafka_bootstrap, topic_prefix, tmp_path_factory
) -> AsyncIterator[tuple[asyncpg.Pool, KafkaSettings, Stack, str]]:
    """A database and topic prefix of this module alone: the relays' published count and the
    workers' queue then hold this run's messages only, whatever ran before in the session."""
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
        **broker_tuning(),
    }
    settings = DatabaseSettings(database_url=url, db_pool_size=4)
    async with db.Database(settings) as database, database.transaction() as conn:
        _, key = await keystore.create_key(conn, tenant_id="scale", name="scale", scopes=ALL_SCOPES)
    pool = await asyncpg.create_pool(settings.plain_url, min_size=1, max_size=4)
    try:
        kafka_settings = KafkaSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
        with running_stack(env, tmp_path_factory.mktemp("scale")) as stack:
            yield pool, kafka_settings, stack, key
    finally:
        await pool.close()
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def run(isolated) -> Run:
    """Start the replicas, submit JOBS jobs through both gateways, wait until all succeeded,
    read every event; collect what the property tests check."""
    pool, kafka_settings, stack, key = isolated
    gateways, relays, workers = _start_replicas(stack)
    apis = [Api(g.url, key) for g in gateways]
    try:
        events = topics.events_topic(kafka_settings.topic_prefix)
        async with TopicReader(kafka_settings, events) as reader:
            started = time.monotonic()
            accepted = await _submit_all(apis)
            submitted = time.monotonic()
            ids = [i for batch in accepted.values() for i in batch]
            assert len(ids) == len(set(ids)) == JOBS
            assert await _wait_done(pool, ids) == {"succeeded": JOBS}
            done = time.monotonic()
            per_job = await _events_per_job(reader, ids)
    finally:
        for api in apis:
            await api.close()

    rows = await pool.fetch(
        "SELECT worker_id, count(*) AS n, max(attempt) AS a FROM job_attempts"
        " WHERE job_id = ANY($1::uuid[]) GROUP BY worker_id",
        ids,
    )
    worker_attempts = {str(r["worker_id"]): (int(r["n"]), int(r["a"])) for r in rows}
    gateway_counts = {f"gateway-{g}": len(accepted[g]) for g in range(GATEWAYS)}
    relay_counts = {
        f"relay-{r}": int(metric_value(_metrics(relay), "jobline_relay_published_messages_total"))
        for r, relay in enumerate(relays)
    }
    worker_counts = {w: n for w, (n, _) in worker_attempts.items()}
    result = Run(
        ids=ids,
        effects=await _effects(pool, ids),
        worker_attempts=worker_attempts,
        per_job=per_job,
        gateway_counts=gateway_counts,
        gateway_exported={
            f"gateway-{g}": metric_value(_metrics(gw), "jobline_gateway_jobs_submitted_total")
            for g, gw in enumerate(gateways)
        },
        relay_counts=relay_counts,
        duplicate_effects=sum(
            metric_value(_metrics(w), "jobline_examples_email_duplicate_effects_total")
            for w in workers
        ),
        figures={
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
            "jobs_with_events_out_of_topic_order": len(_out_of_order(per_job)),
            "cpus": os.cpu_count(),
        },
    )
    print("\nmulti-replica figures: " + json.dumps(result.figures))
    return result


def _out_of_order(per_job: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        job_id: [(d["sequence"], d["state"]) for d in data]
        for job_id, data in per_job.items()
        if [d["sequence"] for d in data] != sorted(d["sequence"] for d in data)
    }


# The run takes about 75 s for 50,000 jobs on two shared cores (2026-12-07), more when busy;
# it is set up by whichever test comes first.
pytestmark = pytest.mark.timeout(DONE_TIMEOUT + 600)


def test_every_job_ran_exactly_once(run: Run) -> None:
    assert len(run.effects) == JOBS
    assert Counter(run.effects.values()) == {1: JOBS}  # each effect recorded once
    assert sum(n for n, _ in run.worker_attempts.values()) == JOBS  # one attempt per job
    assert {a for _, a in run.worker_attempts.values()} == {1}
    assert run.duplicate_effects == 0


def test_each_jobs_events_arrive_in_order_on_the_topic(run: Run) -> None:
    out_of_order = _out_of_order(run.per_job)
    assert out_of_order == {}, f"{len(out_of_order)} jobs, e.g. {list(out_of_order.items())[:3]}"


def test_every_replica_of_every_service_did_a_share(run: Run) -> None:
    assert run.gateway_exported == {k: float(v) for k, v in run.gateway_counts.items()}
    # Published: one work message and three events per job, and nothing else.
    assert sum(run.relay_counts.values()) == 4 * JOBS
    for counts, replicas in (
        (run.gateway_counts, GATEWAYS),
        (run.relay_counts, RELAYS),
        ({w: n for w, (n, _) in run.worker_attempts.items()}, WORKERS),
    ):
        assert len(counts) == replicas
        assert all(n > 0 for n in counts.values()), counts


def test_each_job_has_its_three_events_once(run: Run) -> None:
    wrong = {
        job_id: [(d["sequence"], d["state"]) for d in data]
        for job_id, data in run.per_job.items()
        if sorted((d["sequence"], d["state"]) for d in data)
        != [(1, "queued"), (2, "running"), (3, "succeeded")]
    }
    assert len(run.per_job) == JOBS
    assert wrong == {}, f"{len(wrong)} jobs, e.g. {list(wrong.items())[:3]}"
