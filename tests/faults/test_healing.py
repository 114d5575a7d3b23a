"""Healing from PostgreSQL: a broker that restarts empty and a PostgreSQL that is killed,
each during a 3,000-job run, lose no accepted job, leave none stuck and run none twice.

The broker test restarts this test's own in-memory broker three times while the jobs are
submitted and run: the messages on it are gone each time, the workers live through it, the
relay re-creates the topics. Every job must still finish, from PostgreSQL: the relay heals
the queued jobs whose messages went (jobline_relay/healer.py) and the workers do not carry
their positions over into the new logs (jobline_worker/consumer.py).

The PostgreSQL test SIGKILLs every process of this test's own server twice during the run
and starts it again (crash recovery); clients retry each batch with its Idempotency-Key
until it is answered, as a client of a production job platform would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from jobline.core.apikeys import ALL_SCOPES
from jobline.dev.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from jobline.pg import keystore, migrate
from jobline.pg.db import Database
from jobline.settings import DatabaseSettings, plain_url
from tests.support import email_effects, metric_value, start_worker

PARTITIONS_RESTARTED = "jobline_worker_partitions_restarted_total"
JOBS = 3_000
BATCH = 100
HEAL = {
    # The healer looks every second at jobs queued for more than 5 s (default: 60 s / 10 s).
    "JOBLINE_RELAY_HEAL_AFTER_SECONDS": "5",
    "JOBLINE_RELAY_HEAL_INTERVAL_SECONDS": "1",
    "JOBLINE_RELAY_PUBLISH_TIMEOUT_SECONDS": "3",
    "JOBLINE_RELAY_RETRY_MAX_SECONDS": "1",
    "JOBLINE_KAFKA_REQUEST_TIMEOUT_MS": "3000",
    "JOBLINE_LOG_LEVEL": "WARNING",
}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(free_port(), tmp_path / "own-broker.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "own-pg", free_port())
    server.start()
    yield server
    server.stop()


def _emails(tag: str, batch: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "send-email",
            "queue": "emails",
            "payload": {"to": f"{tag}-{batch}-{i}@example.com", "subject": "heal"},
        }
        for i in range(BATCH)
    ]


async def _submit_all(
    gateway_url: str, key: str, tag: str, ledger: list[str], *, pause: float
) -> None:
    """Submit JOBS jobs in batches ``pause`` seconds apart (spread over the faults), each
    retried with its Idempotency-Key until answered."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=10) as client:
        for batch in range(JOBS // BATCH):
            idempotency = {"Idempotency-Key": f"{tag}-{batch}"}
            while True:
                with contextlib.suppress(httpx.TransportError):
                    response = await client.post(
                        "/v1/jobs/batch", json={"jobs": _emails(tag, batch)}, headers=idempotency
                    )
                    if response.status_code in (200, 201):
                        ledger += [job["id"] for job in response.json()["jobs"]]
                        break
                    assert response.status_code in (409, 429, 500, 502, 503), response.text
                await asyncio.sleep(0.2)
            await asyncio.sleep(pause)


async def _wait_all_done(conn_factory: Any, ids: list[str], within: float) -> None:
    deadline = time.monotonic() + within
    left: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await conn_factory()
            try:
                left = await conn.fetch(
                    "SELECT state, count(*) AS n FROM jobs WHERE id = ANY($1::uuid[])"
                    " AND state <> 'succeeded' GROUP BY state",
                    ids,
                )
            finally:
                await conn.close()
            if not left:
                return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not all jobs succeeded within {within}s: {left}")


async def _retried(conn: asyncpg.Connection, ids: list[str]) -> int:
    """Check that every job of the ledger exists once and succeeded; how many took more than
    one attempt (a claim whose commit the worker never heard of waits for its lease)."""
    assert len(set(ids)) == JOBS
    jobs = await conn.fetch(
        "SELECT j.state, j.attempt, count(a.*) AS attempts FROM jobs j"
        " LEFT JOIN job_attempts a ON a.job_id = j.id WHERE j.id = ANY($1::uuid[])"
        " GROUP BY j.id",
        ids,
    )
    assert len(jobs) == JOBS
    assert {r["state"] for r in jobs} == {"succeeded"}
    assert all(r["attempt"] == r["attempts"] for r in jobs)
    return sum(1 for r in jobs if r["attempt"] > 1)


async def test_three_broker_restarts_during_3000_jobs_lose_none(
    db, database_url, stack, make_api_key, own_broker
):
    env = {"JOBLINE_KAFKA_BOOTSTRAP": own_broker.bootstrap, **HEAL}
    gateway = stack.start("gateway", env=env)
    stack.start("relay", env=env)
    # Few slots: a backlog builds up in the broker, so each restart loses messages that were
    # published and not yet read, and catches the workers with positions still to commit.
    workers = [start_worker(stack, "--concurrency", "4", env=env) for _ in range(2)]
    key = await make_api_key()
    ledger: list[str] = []
    restarted_at = 0.0

    async def restart_three_times() -> None:
        # Two seconds up between restarts: the relay has published the backlog by then while
        # the workers' group is still rejoining, so those messages are lost with the broker.
        nonlocal restarted_at
        await asyncio.sleep(3.0)
        for _ in range(3):
            await asyncio.to_thread(own_broker.stop)  # in memory: every message is gone
            await asyncio.sleep(1.0)
            await asyncio.to_thread(own_broker.start)
            restarted_at = time.monotonic()
            await asyncio.sleep(2.0)

    started = time.monotonic()
    tag = uuid4().hex[:8]
    await asyncio.gather(
        _submit_all(gateway.url, key, tag, ledger, pause=0.6), restart_three_times()
    )
    submitted = time.monotonic()

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(plain_url(database_url))

    await _wait_all_done(connect, ledger, within=240)
    done = time.monotonic()
    assert all(w.alive for w in workers), "the workers were to live through the restarts"
    async with db.connection() as conn:
        # Nothing failed and no worker died: a lost message may cost a wait, never an attempt.
        assert await _retried(conn, ledger) == 0
        healed = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND heals > 0", ledger
        )
    effects = await email_effects(db, ledger)
    assert sorted(effects) == sorted(ledger)
    assert set(effects.values()) == {1}
    texts = [await asyncio.to_thread(_metrics, w.url) for w in workers]
    restarted = sum(metric_value(text, PARTITIONS_RESTARTED) for text in texts)
    print(
        f"\n{JOBS} jobs, 3 broker restarts: submitted in {submitted - started:.1f}s, all done "
        f"{done - started:.1f}s after the first submission, {done - restarted_at:.1f}s after "
        f"the last restart; {healed} jobs healed (work message published again), "
        f"{restarted:.0f} partitions read again from the start by the surviving workers; "
        "0 lost, 0 run twice"
    )


@pytest.mark.parametrize("window", ["0", "1000"], ids=["fairness-off", "fairness-window-1000"])
async def test_jobs_published_while_no_worker_ran_survive_a_broker_that_came_back_empty(  # noqa: PLR0917 - fixtures
    db, database_url, stack, make_api_key, own_broker, window
):
    """The broker loses messages nobody had read (retention ran out while every worker was
    down, a topic re-created): only healing from PostgreSQL can finish these jobs.

    With tenant fairness, the tenant's window (its published messages) is what the broker
    lost, and the rest of its work is parked until that window frees: healing the lost ones
    is what frees it (a relay that left a tenant's queue unhealed while it had work parked
    would wait forever)."""
    fair = window != "0"
    env = {
        "JOBLINE_KAFKA_BOOTSTRAP": own_broker.bootstrap,
        "JOBLINE_RELAY_FAIR_WINDOW": window,
        **HEAL,
    }
    gateway = stack.start("gateway", env=env)
    stack.start("relay", env=env)
    key = await make_api_key()
    ledger: list[str] = []
    await _submit_all(gateway.url, key, uuid4().hex[:8], ledger, pause=0.0)
    async with db.connection() as conn:
        for _ in range(100):  # every work message has left the outbox (for the broker or parked)
            if not await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE job_id = ANY($1::uuid[])", ledger
            ):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the relay did not publish the jobs")
        parked = await conn.fetchval(
            "SELECT count(*) FROM outbox_parked WHERE job_id = ANY($1::uuid[])", ledger
        )
    assert (parked > 0) == fair
    await asyncio.to_thread(own_broker.stop)
    await asyncio.to_thread(own_broker.start)
    lost_at = time.monotonic()
    start_worker(stack, env=env)

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(plain_url(database_url))

    await _wait_all_done(connect, ledger, within=120)
    healed_in = time.monotonic() - lost_at
    async with db.connection() as conn:
        assert await _retried(conn, ledger) == 0
        healed = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND heals > 0", ledger
        )
    # Every published message was gone: each of those jobs was healed (the parked ones were
    # never on the broker).
    assert healed >= JOBS - parked if fair else healed == JOBS
    effects = await email_effects(db, ledger)
    assert sorted(effects) == sorted(ledger)
    assert set(effects.values()) == {1}
    print(
        f"\n{JOBS} jobs ({parked} parked) whose messages the broker lost before any worker "
        f"read them: all done {healed_in:.1f}s after the broker came back empty (heal after "
        f"5 s), each once; {healed} healed"
    )


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return str(response.read().decode())


def _kill_postgres(server: EmbeddedPostgres) -> None:
    """SIGKILL the postmaster and every backend of ``server`` (no shutdown at all)."""
    postmaster = server.running_pid()
    assert postmaster is not None
    children = [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and _parent_of(int(pid)) == postmaster
    ]
    for pid in [postmaster, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


async def _restart_postgres(server: EmbeddedPostgres) -> None:
    deadline = time.monotonic() + 60
    while server.running_pid() is not None:  # the killed postmaster may linger a moment
        assert time.monotonic() < deadline, "the killed PostgreSQL did not go away"
        await asyncio.sleep(0.1)
    while True:
        try:
            await asyncio.to_thread(server.start)
        except Exception:  # shared memory of the killed server still held for a moment
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        assert server.running_pid() is not None
        return


async def test_postgres_killed_twice_during_3000_jobs_loses_none(stack, own_postgres):
    url = own_postgres.url.rsplit("/", 1)[0] + "/jobline"
    admin = await asyncpg.connect(own_postgres.url)
    await admin.execute("CREATE DATABASE jobline")
    await admin.close()
    await asyncio.to_thread(migrate.upgrade, url)
    setup = await Database(DatabaseSettings(database_url=url)).open()
    async with setup.transaction() as conn:
        _, key = await keystore.create_key(
            conn, tenant_id=f"t-{uuid4().hex[:8]}", name="test", scopes=ALL_SCOPES
        )
    await setup.close()

    env = {"JOBLINE_DATABASE_URL": url, **HEAL}
    gateway = stack.start("gateway", env=env)
    stack.start("relay", env=env)
    workers = [start_worker(stack, env=env) for _ in range(2)]
    ledger: list[str] = []
    restarted_at = 0.0

    async def kill_twice() -> None:
        nonlocal restarted_at
        for _ in range(2):
            await asyncio.sleep(3.0)
            await asyncio.to_thread(_kill_postgres, own_postgres)
            await asyncio.sleep(1.0)
            await _restart_postgres(own_postgres)
            restarted_at = time.monotonic()

    started = time.monotonic()
    await asyncio.gather(
        _submit_all(gateway.url, key, uuid4().hex[:8], ledger, pause=0.3), kill_twice()
    )

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(url)

    await _wait_all_done(connect, ledger, within=240)
    done = time.monotonic()
    assert all(w.alive for w in workers)
    conn = await connect()
    try:
        retried = await _retried(conn, ledger)
        rows = await conn.fetch(
            "SELECT idempotency_key, deliveries FROM jobline_examples.email_effects"
            " WHERE idempotency_key = ANY($1::text[])",
            ledger,
        )
    finally:
        await conn.close()
    assert sorted(r["idempotency_key"] for r in rows) == sorted(ledger)
    reruns = sum(r["deliveries"] - 1 for r in rows)
    print(
        f"\n{JOBS} jobs, PostgreSQL SIGKILLed twice: all done {done - started:.1f}s after the "
        f"first submission, {done - restarted_at:.1f}s after the last restart; 0 lost, "
        f"{retried} jobs needed a second attempt, {reruns} handler re-runs absorbed by the "
        "effect's idempotency key"
    )
