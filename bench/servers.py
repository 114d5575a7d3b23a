"""What a benchmark runs against: PostgreSQL and the broker, a database, a key, the services.

The embedded servers are started exactly as ``make run`` starts them (PostgreSQL with its
default, durable settings: fsync and synchronous commit on), unless JOBLINE_BENCH_DATABASE_URL
(a server URL) and JOBLINE_BENCH_KAFKA_BOOTSTRAP point at running ones.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg

from jobline.core.apikeys import ALL_SCOPES
from jobline.core.registry import JobTypeRecord
from jobline.dev.embedded import BROKER_TUNING, EmbeddedBroker, EmbeddedPostgres, free_port
from jobline.pg import db, keystore, migrate, registry
from jobline.pg.db import Database
from jobline.settings import DatabaseSettings
from tests.stack import ServiceProcess

# The queues the workloads submit to, and the one job type (defined in bench.handlers).
QUEUES = ("a1", "a2", "c", "p", "l", "f")
JOB_TYPE = "bench.noop"
SLEEP_TYPE = "bench.sleep"  # the priority workload's backlog (bench.flow)

# The benchmark measures the platform, not the gateway's per-key rate limit.
GATEWAY_ENV = {
    "JOBLINE_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
    "JOBLINE_GATEWAY_RATE_LIMIT_BURST": "1000000",
    # The bench measures the platform, not the tenant quotas or the per-address limit.
    "JOBLINE_GATEWAY_ADDRESS_RATE_PER_SECOND": "1000000",
    "JOBLINE_GATEWAY_ADDRESS_BURST": "10000000",
    "JOBLINE_QUOTA_SUBMISSIONS_PER_SECOND": "1000000",
    "JOBLINE_QUOTA_SUBMISSION_BURST": "10000000",
}


@dataclass
class Bench:
    """One run's servers, database and services; ``pids`` names what CPU is counted for."""

    database_url: str
    kafka_bootstrap: str
    work_dir: Path
    postgres_pid: int | None
    broker_pid: int | None
    topic_prefix: str = field(default_factory=lambda: f"bench{uuid4().hex[:8]}")
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    api_key: str = ""

    def env(self) -> dict[str, str]:
        # As `jobline dev` runs them: tuned for the embedded broker when it is the one used.
        tuning = dict(BROKER_TUNING) if self.broker_pid is not None else {}
        return {
            **tuning,
            "JOBLINE_DATABASE_URL": self.database_url,
            "JOBLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "JOBLINE_TOPIC_PREFIX": self.topic_prefix,
            "JOBLINE_ENV": "test",
            "JOBLINE_LOG_LEVEL": "WARNING",
            # A1 and A2 leave 40,000 jobs queued with no worker for their queues; healing them
            # (a few duplicate messages each) during B and C is not the hot path measured here.
            "JOBLINE_RELAY_HEAL_AFTER_SECONDS": "86400",
        }

    def start(self, name: str, kind: str, *args: str, extra: dict[str, str] | None = None) -> None:
        service = ServiceProcess(
            kind=kind,
            env={**self.env(), **(extra or {})},
            log_path=self.work_dir / f"{name}.log",
            args=args,
        )
        self.services[name] = service
        service.start()
        _profile(service, name)

    def stop(self, name: str) -> None:
        service = self.services.pop(name)
        if service.alive:
            service.terminate(30)

    def pids(self) -> dict[str, int | None]:
        def pid(name: str) -> int | None:
            service = self.services.get(name)
            return service.proc.pid if service and service.proc and service.alive else None

        return {
            "gateway": pid("gateway"),
            "relay": pid("relay"),
            "worker": pid("worker"),
            "postgres": self.postgres_pid,
            "broker": self.broker_pid,
            "client": os.getpid(),
        }

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def wait_outbox_empty(self, timeout: float = 120.0) -> None:  # noqa: ASYNC109
        """Until the relay has published every due outbox row."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = await asyncpg.connect(self.database_url)
        try:
            while loop.time() < deadline:
                if not await conn.fetchval("SELECT count(*) FROM outbox"):
                    return
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        raise TimeoutError(f"the outbox still holds rows after {timeout}s")


def _profile(service: ServiceProcess, name: str) -> None:
    """With JOBLINE_BENCH_PROFILE=<dir>, py-spy samples the service for its whole life into
    <dir>/<name>-<pid>.txt (collapsed stacks; summarise with ``python -m bench.profile``)."""
    folder = os.environ.get("JOBLINE_BENCH_PROFILE")
    if not folder or service.proc is None:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    pid = service.proc.pid
    subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
         "--format", "raw", "--output", f"{folder}/{name}-{pid}.txt"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


@contextmanager
def bench() -> Iterator[Bench]:
    """Servers, a fresh migrated database and an API key; every service stopped at the end."""
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobline-bench-")))
        server_url = os.environ.get("JOBLINE_BENCH_DATABASE_URL")
        postgres_pid = broker_pid = None
        if not server_url:
            settings = {"shared_preload_libraries": "pg_stat_statements"} if STATEMENTS else {}
            pg = EmbeddedPostgres(work / "pg", free_port(), settings=settings)
            pg.start()
            stack.callback(pg.stop)
            server_url, postgres_pid = pg.url, pg.running_pid()
        bootstrap = os.environ.get("JOBLINE_BENCH_KAFKA_BOOTSTRAP")
        if not bootstrap:
            broker = EmbeddedBroker(free_port(), work / "broker.log")
            broker.start()
            stack.callback(broker.stop)
            bootstrap, broker_pid = broker.bootstrap, broker.pid
        name = f"bench_{uuid4().hex[:10]}"
        asyncio.run(db.create_database(server_url, name))
        url = db.database_url(server_url, name)
        migrate.upgrade(url)
        if STATEMENTS:
            asyncio.run(_sql(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        run = Bench(url, bootstrap, work, postgres_pid, broker_pid)
        run.api_key = asyncio.run(_api_key(url))
        try:
            yield run
        finally:
            for service in list(run.services.values()):
                if service.alive:
                    service.terminate(30)


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh migrated database on the embedded PostgreSQL (or JOBLINE_BENCH_DATABASE_URL's
    server, where it is dropped afterwards); its URL."""
    with ExitStack() as stack:
        server_url = os.environ.get("JOBLINE_BENCH_DATABASE_URL")
        if not server_url:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobline-bench-")))
            pg = EmbeddedPostgres(work / "pg", free_port())
            pg.start()
            stack.callback(pg.stop)
            server_url = pg.url
        name = f"bench_{uuid4().hex[:10]}"
        asyncio.run(db.create_database(server_url, name))
        stack.callback(lambda: asyncio.run(db.drop_database(server_url, name)))
        url = db.database_url(server_url, name)
        migrate.upgrade(url)
        yield url


# JOBLINE_BENCH_STATEMENTS=1: PostgreSQL counts its statements (pg_stat_statements) and each
# workload prints where the server's time went (a profile of the database side).
STATEMENTS = os.environ.get("JOBLINE_BENCH_STATEMENTS") == "1"


async def _sql(url: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def reset_statements(run: Bench) -> None:
    if STATEMENTS:
        await _sql(run.database_url, "SELECT pg_stat_statements_reset()")


async def top_statements(run: Bench, jobs: int, count: int = 8) -> list[str]:
    """The statements that took the server's time since the reset, per job."""
    if not STATEMENTS:
        return []
    rows = await _sql(
        run.database_url,
        "SELECT calls, total_exec_time AS ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
        " AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT " + str(count),
    )
    return [
        f"{r['ms'] * 1000 / jobs:7.1f} us/job {r['calls']:7d} calls  {r['query']}" for r in rows
    ]


async def tenant_key(url: str, tenant: str) -> str:
    """A key of another tenant (the fairness workload's second tenant)."""
    async with (
        Database(DatabaseSettings(database_url=url)) as database,
        database.transaction() as conn,
    ):
        _, plaintext = await keystore.create_key(
            conn, tenant_id=tenant, name="bench", scopes=ALL_SCOPES
        )
    return plaintext


async def _api_key(url: str) -> str:
    """The bench tenant's key, after declaring its queues and its job type as an operator
    would (the gateway admits only declared ones)."""
    async with (
        Database(DatabaseSettings(database_url=url)) as database,
        database.transaction() as conn,
    ):
        await registry.declare_missing_queues(conn, QUEUES, "bench")
        await registry.register_job_types(
            conn,
            [
                JobTypeRecord(JOB_TYPE, QUEUES[0]),
                JobTypeRecord(SLEEP_TYPE, "p"),
                *(JobTypeRecord(t, "l") for t in ("bench.rated", "bench.keyed")),
            ],
            source="operator",
            registered_by="bench",
        )
        _, plaintext = await keystore.create_key(
            conn, tenant_id="bench", name="bench", scopes=ALL_SCOPES
        )
    return plaintext
