"""LISTEN/NOTIFY wake-up against real PostgreSQL, including a dropped listen connection."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from jobline.settings import plain_url
from jobline_relay.wakeup import APPLICATION_NAME, Wakeup
from tests.support import fresh_queue, new_tenant, submit_many, wait_for


async def test_an_outbox_insert_wakes_the_relay_and_a_dropped_listener_comes_back(db, database_url):
    wakeup = Wakeup(plain_url(database_url))
    task = asyncio.create_task(wakeup.run())
    try:
        await wait_for(lambda: wakeup.listening, 10)
        tenant = await new_tenant(db)
        wakeup.clear()
        assert not await wakeup.wait(0.2)  # nothing happened: times out
        started = time.monotonic()
        await submit_many(db, tenant, fresh_queue(), 3)
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
        await wait_for(lambda: wakeup.sessions > sessions and wakeup.listening, 10)
        wakeup.clear()
        await submit_many(db, tenant, fresh_queue(), 1)
        assert await wakeup.wait(5)
    finally:
        wakeup.stop()
        await asyncio.wait_for(task, 5)


async def test_a_delayed_row_announces_when_it_falls_due(db, database_url):
    """The NOTIFY of a statement whose rows are all in the future carries the earliest
    time, so an idle relay sleeps until then without asking the database."""
    from datetime import UTC, datetime, timedelta

    wakeup = Wakeup(plain_url(database_url))
    task = asyncio.create_task(wakeup.run())
    try:
        await wait_for(lambda: wakeup.listening, 10)
        tenant = await new_tenant(db)
        run_at = datetime.now(UTC) + timedelta(minutes=10)
        wakeup.clear()
        wakeup.next_due = None
        # A scheduled job writes its "scheduled" event now, in a quiet row (no wake-up: the
        # relay's polls collect it), and its work message for later (announced).
        await submit_many(db, tenant, fresh_queue(), 1, run_at=run_at)
        await wait_for(lambda: wakeup.next_due is not None, 5)
        assert not await wakeup.wait(0.2)
        assert wakeup.next_due == run_at.timestamp()
    finally:
        wakeup.stop()
        await asyncio.wait_for(task, 5)
