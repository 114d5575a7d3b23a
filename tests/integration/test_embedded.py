import asyncio
import socket

import asyncpg
import pytest

from jobline.core.errors import DependencyUnavailable
from jobline.dev.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, port_open


async def _query(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_postgres_restart_keeps_data(tmp_path):
    pg = EmbeddedPostgres(tmp_path / "pg", free_port())
    await asyncio.to_thread(pg.start)
    try:
        await _query(pg.url, "CREATE TABLE kept AS SELECT 42 AS answer")
        await asyncio.to_thread(pg.stop)
        assert pg.running_pid() is None
        assert not port_open("127.0.0.1", pg.port)

        await asyncio.to_thread(pg.start)
        assert await _query(pg.url, "SELECT answer FROM kept") == 42
    finally:
        await asyncio.to_thread(pg.stop)


async def test_postgres_start_adopts_a_server_already_running_on_the_data_dir(tmp_path):
    with EmbeddedPostgres(tmp_path / "pg", free_port()) as first:
        pid = first.running_pid()
        second = EmbeddedPostgres(tmp_path / "pg", port=1)
        await asyncio.to_thread(second.start)
        assert second.port == first.port
        assert second.running_pid() == pid
        assert await _query(second.url, "SELECT 1") == 1
    assert first.running_pid() is None
    first.stop()  # stopping a stopped server is a no-op


def test_postgres_start_on_a_busy_port_raises(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        pg = EmbeddedPostgres(tmp_path / "pg", busy.getsockname()[1], timeout=10)
        try:
            with pytest.raises(DependencyUnavailable, match="pg_ctl failed"):
                pg.start()
        finally:
            pg.stop()
    assert pg.running_pid() is None


def test_broker_start_stop_frees_the_port(tmp_path):
    broker = EmbeddedBroker(free_port(), tmp_path / "tansu.log")
    with broker:
        assert broker.pid is not None
        assert port_open("127.0.0.1", broker.port)
    assert broker.pid is None
    assert not port_open("127.0.0.1", broker.port)
    with socket.socket() as again:  # nothing holds the port any more
        again.bind(("127.0.0.1", broker.port))
    assert (tmp_path / "tansu.log").read_text()


def test_broker_on_a_busy_port_raises():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        broker = EmbeddedBroker(busy.getsockname()[1])
        with pytest.raises(DependencyUnavailable, match="already in use"):
            broker.start()
    assert broker.pid is None
