"""The PostgreSQL edge's contract: what Jobline relies on from a server through
:class:`~jobline.pg.db.Database` and the LISTEN helper, as one set of cases run against every
server at hand: the run's server (embedded, or JOBLINE_TEST_DATABASE_URL's) and the machine's
system PostgreSQL at 127.0.0.1:5432 when one answers (another major version, another build).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from jobline.pg import db as dbmod
from jobline.pg.db import Database
from jobline.pg.listen import Listener
from jobline.settings import DatabaseSettings
from tests.support import wait_for

SYSTEM_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="module", params=["run", "system"])
async def server(request, pg_server_url) -> AsyncIterator[str]:
    """A database of its own on the backend, dropped afterwards."""
    base = pg_server_url if request.param == "run" else SYSTEM_SERVER
    if request.param == "system" and (
        base.rsplit("/", 1)[0] == pg_server_url.rsplit("/", 1)[0] or not await _reachable(base)
    ):
        pytest.skip("no second PostgreSQL server on this machine")
    name = f"jobline_contract_{uuid4().hex[:10]}"
    await dbmod.create_database(base, name)
    try:
        yield dbmod.database_url(base, name)
    finally:
        await dbmod.drop_database(base, name)


@pytest.fixture
async def database(server) -> AsyncIterator[Database]:
    settings = DatabaseSettings(database_url=server, db_pool_size=2, db_max_overflow=0)
    async with Database(settings, application_name="contract") as opened:
        yield opened


async def test_jsonb_round_trips_python_values(database):
    values = [{"a": [1, 2.5, None, True]}, ["x", {"é": "ü"}], {"big": 2**70}, "text", None]
    async with database.connection() as conn:
        await conn.execute("CREATE TEMP TABLE t (v jsonb)")
        await conn.executemany("INSERT INTO t VALUES ($1)", [(v,) for v in values])
        back = [r["v"] for r in await conn.fetch("SELECT v FROM t")]
    assert back == values


async def test_json_text_arrays_fold_into_jsonb_rows(database):
    """The multi-row statements pass jsonb values as JSON text per element (see queries.sql)."""
    from jobline.pg.jobrows import json_texts

    rows: list[Any] = [{"k": [1, 2]}, [], None]
    async with database.connection() as conn:
        got = await conn.fetch(
            "SELECT CAST(v AS jsonb) AS v FROM unnest(CAST($1 AS text[])) WITH ORDINALITY AS"
            " u(v, n) ORDER BY n",
            json_texts(rows),
        )
    assert [r["v"] for r in got] == rows


async def test_a_transaction_commits_on_exit_and_rolls_back_on_error(database):
    async with database.connection() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS tx (n int)")
    async with database.transaction() as conn:
        await conn.execute("INSERT INTO tx VALUES (1)")

    async def failing() -> None:
        async with database.transaction() as conn:
            await conn.execute("INSERT INTO tx VALUES (2)")
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        await failing()
    async with database.connection() as conn:
        assert [r["n"] for r in await conn.fetch("SELECT n FROM tx")] == [1]


async def test_timestamps_come_back_aware_in_utc(database):
    now = datetime.now(UTC)
    async with database.connection() as conn:
        back = await conn.fetchval("SELECT $1::timestamptz", now)
    assert back == now
    assert back.tzinfo is not None


async def test_a_listener_hears_notifications_and_comes_back_after_a_drop(database, server):
    heard: list[str] = []
    gaps = 0

    def gap() -> None:
        nonlocal gaps
        gaps += 1

    listener = Listener(server, "contract_channel", heard.append, gap, application_name="lsn")
    task = asyncio.create_task(listener.run())
    try:
        await wait_for(lambda: listener.listening, 10)
        async with database.connection() as conn:
            await conn.execute("SELECT pg_notify('contract_channel', 'one')")
        await wait_for(lambda: heard == ["one"], 5)
        sessions = listener.sessions
        async with database.connection() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'lsn' AND datname = current_database()"
            )
        await wait_for(lambda: listener.sessions > sessions and listener.listening, 15)
        assert gaps >= 2  # the first session and the drop both called for a look
        async with database.connection() as conn:
            await conn.execute("SELECT pg_notify('contract_channel', 'two')")
        await wait_for(lambda: heard == ["one", "two"], 5)
    finally:
        listener.stop()
        await asyncio.wait_for(task, 10)


async def test_the_pool_replaces_connections_the_server_closed(database, monkeypatch):
    monkeypatch.setattr(dbmod, "IDLE_PING_SECONDS", 0.1)
    async with database.connection() as conn:
        first = await conn.fetchval("SELECT pg_backend_pid()")
        killer = await asyncpg.connect(database.url)
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", first)
    finally:
        await killer.close()
    await asyncio.sleep(0.2)
    async with database.connection() as conn:
        assert await conn.fetchval("SELECT pg_backend_pid()") != first
