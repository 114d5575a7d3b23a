"""The PostgreSQL boundary: engine, transactions, reachability check, database create/drop.

Jobline uses SQLAlchemy Core over asyncpg, not ORM sessions: queries take an
``AsyncConnection`` that is already inside a transaction.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from jobline.core.errors import DependencyUnavailable
from jobline.settings import DatabaseSettings, asyncpg_url, plain_url

# CREATE DATABASE ... TEMPLATE fails while anyone else is connected to the template; a pool
# that was just closed may take a moment to leave, so retry for this long.
_TEMPLATE_BUSY_SECONDS = 10.0

# A pooled connection idle at least this long is pinged at checkout (see create_engine).
IDLE_PING_SECONDS = 2.0
_CHECKED_IN_AT = "jobline_checked_in_at"


def create_engine(settings: DatabaseSettings, *, application_name: str = "jobline") -> AsyncEngine:
    """An asyncpg engine with the pool sizes and connect timeout from ``settings``."""
    engine = create_async_engine(
        settings.async_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # LIFO: the connection used last is reused first, so at low traffic the same few stay
        # warm (no idle ping) and the rest sit idle instead of every one being pinged in turn.
        pool_use_lifo=True,
        # How long a checkout waits for a free connection before raising.
        pool_timeout=settings.db_connect_timeout_seconds,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            "server_settings": {"application_name": application_name},
        },
    )
    # No pool_pre_ping: with asyncpg it is BEGIN + ";" + ROLLBACK, three round trips on every
    # checkout -- a quarter of the worker's and the gateway's round trips per job. This keeps
    # its protection where it matters: a connection the server closed while it sat idle in
    # the pool (restart, idle timeout, failover) is replaced at checkout. One that was in use
    # moments ago is not pinged; if the server went away since, its first statement fails,
    # SQLAlchemy sees a disconnect and invalidates the whole pool (every older connection
    # reconnects at its next checkout), and the caller's retry or error path runs, as for a
    # failure in the middle of a query (which no pre-ping prevents either).
    _ping_idle_connections(engine, IDLE_PING_SECONDS)
    return engine


def _ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    """Pre-ping only connections that sat in the pool ``idle_seconds`` or longer."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # fresh, or in use a moment ago
        try:
            # The asyncpg adapter's ping (runs inside the checkout's greenlet).
            dbapi_connection.ping()
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction: committed on exit, rolled back on an exception."""
    async with engine.begin() as conn:
        yield conn


@asynccontextmanager
async def session_scope(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """The unit of work of one request or message: the same as :func:`transaction`."""
    async with transaction(engine) as conn:
        yield conn


def describe(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL, without credentials (for messages)."""
    try:
        parsed = make_url(asyncpg_url(url))
    except ArgumentError:
        return "<invalid URL>"
    host = parsed.host or "localhost"
    port = parsed.port or 5432
    database = parsed.database or parsed.username or "postgres"
    return f"{host}:{port}/{database}"


# The timeout parameter is the contract /readyz and `jobline dev` call with.
async def check_database(url: str, timeout: float = 3.0) -> None:  # noqa: ASYNC109
    """Connect and run ``SELECT 1``; raise :class:`DependencyUnavailable` with one line if not."""
    where = describe(url)
    try:
        async with asyncio.timeout(timeout):
            conn = await asyncpg.connect(plain_url(url), timeout=timeout)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close(timeout=timeout)
    except Exception as exc:
        raise DependencyUnavailable(f"PostgreSQL at {where} {_reason(exc, timeout)}") from exc


def _reason(exc: BaseException, timeout: float) -> str:
    """The one-line explanation of a failed connection attempt."""
    if isinstance(exc, TimeoutError):
        return f"unreachable: no answer within {timeout:g}s"
    if isinstance(exc, socket.gaierror):
        return "unreachable: unknown host"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "unusable: the database does not exist"
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"refused the login: {_first_line(exc)}"
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return "unreachable: the server is starting up or shutting down"
    if isinstance(exc, asyncpg.PostgresError):
        return f"unusable: {_first_line(exc)}"
    if isinstance(exc, ConnectionRefusedError) or (
        # asyncpg tries every address a host name resolves to (::1 and 127.0.0.1 for
        # localhost) and raises a plain OSError listing them when all fail.
        isinstance(exc, OSError)
        and (exc.errno == errno.ECONNREFUSED or "Connect call failed" in str(exc))
    ):
        return "unreachable: connection refused"
    if isinstance(exc, OSError):
        return f"unreachable: {exc.strerror or _first_line(exc)}"
    if isinstance(exc, ValueError | asyncpg.InterfaceError):
        return f"not usable: invalid URL ({_first_line(exc)})"
    return f"unreachable: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


async def create_database(server_url: str, name: str, template: str | None = None) -> None:
    """``CREATE DATABASE name [TEMPLATE template]`` on the server at ``server_url``."""
    sql = f"CREATE DATABASE {quote_ident(name)}"
    if template is not None:
        sql += f" TEMPLATE {quote_ident(template)}"
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        deadline = time.monotonic() + _TEMPLATE_BUSY_SECONDS
        while True:
            try:
                await conn.execute(sql)
                return
            except asyncpg.ObjectInUseError:
                # "source database ... is being accessed by other users"
                if template is None or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting its remaining sessions."""
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        # WITH (FORCE) (PostgreSQL 13+) terminates leftover connections, e.g. a pool a
        # failed test did not close.
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointing at database ``name`` instead (the scheme is kept)."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)
