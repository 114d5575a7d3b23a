"""The PostgreSQL boundary: a connection pool (:class:`Database`), reachability check,
database create/drop.

Runtime code talks to PostgreSQL through asyncpg directly: measured on this machine, one
prepared INSERT costs about 65 us of client CPU on a held asyncpg connection against about
380 us through SQLAlchemy's async engine in a transaction, and the hot paths run a few
statements per job. SQLAlchemy Core still describes the schema (:mod:`jobline.pg.tables`) for
alembic (and, in :mod:`jobline.pg.engine`, the analyzer's store until it moves over).

jsonb values are Python objects both ways (the codec below); timestamps are aware datetimes.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self, TypeAlias

import asyncpg
import orjson
from urllib.parse import urlsplit, urlunsplit

from jobline.core.errors import DependencyUnavailable
from jobline.settings import DatabaseSettings, plain_url

# asyncpg's types ship without annotations; this names what a connection argument is.
Conn: TypeAlias = Any

# CREATE DATABASE ... TEMPLATE fails while anyone else is connected to the template; a pool
# that was just closed may take a moment to leave, so retry for this long.
_TEMPLATE_BUSY_SECONDS = 10.0


def _dumps(value: Any) -> str:
    # orjson: several times faster than json on payloads; str for asyncpg's text codec.
    return orjson.dumps(value).decode()


async def _init_connection(conn: Conn) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
        )


# A pooled connection idle at least this long is pinged at checkout (see Database.connection).
IDLE_PING_SECONDS = 2.0
# What the ping of a connection that died in the pool raises.
_GONE = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


class Database:
    """A pool of asyncpg connections with Jobline's codecs; ``async with`` opens and closes it."""

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        application_name: str = "jobline",
        max_size: int | None = None,
    ) -> None:
        self.url = settings.plain_url
        self.max_size = max_size or settings.db_pool_size + settings.db_max_overflow
        self.min_size = min(settings.db_pool_size, self.max_size, 2)
        self.timeout = settings.db_connect_timeout_seconds
        self.application_name = application_name
        self._pool: asyncpg.Pool | None = None
        # When each connection (by server pid) went back to the pool.
        self._idle_since: dict[int, float] = {}

    async def open(self) -> Self:
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=self.min_size,
            max_size=self.max_size,
            timeout=self.timeout,
            init=_init_connection,
            reset=self._returned,
            # A connection idle this long is closed; the next checkout opens a fresh one.
            max_inactive_connection_lifetime=60.0,
            server_settings={"application_name": self.application_name},
        )
        return self

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return self._pool

    async def _returned(self, conn: Conn) -> None:
        """The pool's reset: only note the time. asyncpg rolls back an open transaction by
        itself; its default reset (RESET ALL, UNLISTEN *, CLOSE ALL, advisory unlock) costs a
        round trip per checkout, and Jobline leaves no session state on pooled connections."""
        self._idle_since[conn.get_server_pid()] = time.monotonic()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection in autocommit mode (each statement its own transaction).

        A connection idle in the pool for a while is pinged first: the server may have
        closed it meanwhile (a restart, an idle timeout, a failover), and a fresh one is
        taken instead. One in use a moment ago is not pinged (a round trip per checkout for
        nothing); if the server went away since, its first statement fails, and then every
        pooled connection is replaced, so a restart costs one failed operation, not one per
        connection.
        """
        pool = self.pool
        conn = await pool.acquire(timeout=self.timeout)
        since = self._idle_since.pop(conn.get_server_pid(), None)
        if since is not None and time.monotonic() - since >= IDLE_PING_SECONDS:
            try:
                await conn.execute("SELECT 1")
            except _GONE:
                await pool.expire_connections()
                await pool.release(conn)
                conn = await pool.acquire(timeout=self.timeout)
        try:
            yield conn
        except BaseException:
            if conn.is_closed():  # it died under us: so, likely, did its siblings
                await pool.expire_connections()
            raise
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection inside a transaction: committed on exit, rolled back on error."""
        async with self.connection() as conn, conn.transaction():
            yield conn


def describe(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL, without credentials (for messages)."""
    try:
        parts = urlsplit(plain_url(url))
        port = parts.port or 5432
    except ValueError:
        return "<invalid URL>"
    if parts.scheme not in ("postgresql", "postgres"):
        return "<invalid URL>"
    host = parts.hostname or "localhost"
    database = parts.path.lstrip("/") or parts.username or "postgres"
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
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))
