"""LISTEN/NOTIFY wake-up against real PostgreSQL, including a dropped listen connection."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from jobline.settings import plain_url
from jobline_relay.wakeup import APPLICATION_NAME, Wakeup
from tests.integration.relay.helpers import fresh_queue, insert_jobs, new_tenant, wait_until


async def test_an_outbox_insert_wakes_the_relay_and_a_dropped_listener_comes_back(
    engine, database_url
):
    wakeup = Wakeup(plain_url(database_url))
    task = asyncio.create_task(wakeup.run())
    try:
        await wait_until(lambda: wakeup.listening, 10)
        tenant = await new_tenant(engine)
        wakeup.clear()
        assert not await wakeup.wait(0.2)  # nothing happened: times out
        started = time.monotonic()
        await insert_jobs(engine, tenant, fresh_queue(), 3)
        assert await wakeup.wait(5)
        assert time.monotonic() - started < 1

        # The server drops the listening session (restart, failover, idle kill).
        sessions = wakeup.sessions
        conn = await asyncpg.connect(plain_url(database_url))
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = $1",
                APPLICATION_NAME,
            )
        finally:
            await conn.close()
        assert killed >= 1
        # Reconnected with backoff: a new session (the gap may be a few ms, too short to
        # catch `listening` being false).
        await wait_until(lambda: wakeup.sessions > sessions and wakeup.listening, 10)
        wakeup.clear()
        await insert_jobs(engine, tenant, fresh_queue(), 1)
        assert await wakeup.wait(5)
    finally:
        wakeup.stop()
        await asyncio.wait_for(task, 5)
