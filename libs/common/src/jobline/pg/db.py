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
import collections
import contextlib
import errno
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from jobline.core import jsontext
from jobline.core.errors import DependencyUnavailable
from jobline.settings import DatabaseSettings, plain_url

# asyncpg's types ship without annotations; this names what a connection argument is.
Conn: TypeAlias = Any

# CREATE DATABASE ... TEMPLATE fails while anyone else is connected to the template; a pool
# that was just closed may take a moment to leave, so retry for this long.
_TEMPLATE_BUSY_SECONDS = 10.0


dumps = jsontext.dumps_text  # orjson for jsonb (several times faster than json on payloads)


async def _init_connection(conn: Conn) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name, encoder=dumps, decoder=jsontext.loads, schema="pg_catalog", format="text"
        )


# A pooled connection idle at least this long is pinged at checkout (see Database.acquire).
IDLE_PING_SECONDS = 2.0
# An idle connection is closed after this long unused (the pool shrinks back after a burst).
MAX_IDLE_SECONDS = 60.0
# What a connection the server closed raises (InternalClientError: a statement sent before
# asyncpg noticed the server's goodbye).
_GONE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
)


class Database:
    """A pool of asyncpg connections with Jobline's codecs; ``async with`` opens and closes it.

    Its own small pool rather than asyncpg's: measured here, a checkout and return through
    ``asyncpg.Pool`` cost about 86 us of CPU against 49 us for a plain LIFO of connections,
    and the gateway and the relay check out a connection per request or batch. What the pool
    does is kept: a bounded size with waiters, connections opened on demand and closed after
    ``MAX_IDLE_SECONDS`` unused, a ping for one idle ``IDLE_PING_SECONDS`` or more (the server
    may have closed it meanwhile: a restart, an idle timeout, a failover), and a connection
    that ends in a transaction or an error is closed, never reused. When one is found dead
    every idle one is dropped too, so a server restart costs one failed operation at most.

    ``synchronous_commit=False`` is for writers whose every write can be lost in a server
    crash without harm (the relay: a lost delete re-publishes, a lost due flip is redone).
    """

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        application_name: str = "jobline",
        max_size: int | None = None,
        synchronous_commit: bool = True,
    ) -> None:
        self.url = settings.plain_url
        self.max_size = max_size or settings.db_pool_size + settings.db_max_overflow
        self.timeout = settings.db_connect_timeout_seconds
        self.application_name = application_name
        self.server_settings = {"application_name": application_name}
        if not synchronous_commit:
            self.server_settings["synchronous_commit"] = "off"
        self._idle: list[tuple[Conn, float]] = []  # LIFO: the warmest connection first
        self._waiters: collections.deque[asyncio.Future[Conn | None]] = collections.deque()
        self._size = 0  # connections open or being opened
        self._open = False

    async def open(self) -> Self:
        """Open one connection now: a wrong URL or a down server fails here, not later."""
        self._open = True
        self.release(await self.acquire())
        return self

    async def close(self) -> None:
        self._open = False
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._size -= 1
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the database was closed"))

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect(self) -> Conn:
        conn = await asyncpg.connect(
            self.url, timeout=self.timeout, server_settings=self.server_settings
        )
        try:
            await _init_connection(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def acquire(self) -> Conn:
        """A connection for the caller alone; give it back with :meth:`release`."""
        if not self._open:
            raise RuntimeError("the database is not open")
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            idle = now - since
            if conn.is_closed() or idle >= MAX_IDLE_SECONDS:
                self._discard(conn)
                continue
            if idle >= IDLE_PING_SECONDS:
                try:
                    await conn.execute("SELECT 1")
                except _GONE:
                    self._discard(conn)
                    self._drop_idle()
                    continue
            return conn
        if self._size < self.max_size:
            return await self._new()
        waiter: asyncio.Future[Conn | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await asyncio.wait_for(waiter, self.timeout)
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)  # handed over as we gave up: pass it on
                else:
                    self._size -= 1
                    self._wake()
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        return handed if handed is not None else await self._new(reserved=True)

    async def _new(self, *, reserved: bool = False) -> Conn:
        if not reserved:
            self._size += 1
        try:
            return await self._connect()
        except BaseException:
            self._size -= 1
            self._wake()
            raise

    def release(self, conn: Conn, *, broken: bool = False) -> None:
        """Give a connection back; one that is ``broken`` (or in a transaction) is closed."""
        dead = conn.is_closed()
        if broken or dead or not self._open or conn.is_in_transaction():
            self._discard(conn)
            if dead:  # the server closed it: likely the idle ones too
                self._drop_idle()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append((conn, time.monotonic()))

    def _discard(self, conn: Conn) -> None:
        self._size -= 1
        conn.terminate()
        self._wake()

    def _wake(self) -> None:
        """A slot is free: let the first waiter open a connection of its own."""
        while self._waiters and self._size < self.max_size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._size += 1
                waiter.set_result(None)
                return

    def _drop_idle(self) -> None:
        """A connection died under us: so, likely, did the idle ones."""
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._discard(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection in autocommit mode (each statement its own transaction)."""
        conn = await self.acquire()
        broken = False
        try:
            yield conn
        except BaseException as exc:
            # Its state after an error or a cancellation mid-statement is not worth
            # trusting; a new connection costs a few ms, once.
            broken = True
            if isinstance(exc, _GONE):
                self._drop_idle()
            raise
        finally:
            self.release(conn, broken=broken)

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
