"""Schema migrations (alembic), driven from code: no alembic.ini is needed at runtime.

``upgrade``, ``downgrade`` and ``current`` are synchronous: each runs its own event loop, so
call them from a thread (``asyncio.to_thread``) when an event loop is already running. Called
on a thread whose loop is running, they hand the work to a helper thread and block until it
is done. Concurrent upgrades from several processes are serialised by an advisory lock that
``migrations/env.py`` takes inside the migration transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from jobline.settings import asyncpg_url

T = TypeVar("T")

# The key of the transaction-level advisory lock env.py holds while migrating. Any constant
# works as long as every Jobline version uses the same one ("jobline" in ASCII).
ADVISORY_LOCK_KEY = 0x6A6F626C696E65

_IN_PROCESS = threading.Lock()

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def config(url: str | None = None) -> Config:
    """The alembic configuration of Jobline's migrations, built in code."""
    cfg = Config()
    # A filesystem path (the package ships the folder as package data); "%" is escaped
    # because alembic options go through configparser interpolation.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    _run(_with_connection(url, lambda conn: command.upgrade(_bound(conn), revision)))


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision``."""
    _run(_with_connection(url, lambda conn: command.downgrade(_bound(conn), revision)))


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None if it was never migrated."""
    return _run(
        _with_connection(url, lambda conn: MigrationContext.configure(conn).get_current_revision())
    )


def head() -> str:
    """The newest revision this package ships."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(config()).get_current_head()
    if revision is None:  # pragma: no cover - the package always ships 0001
        raise RuntimeError("no migrations found")
    return revision


def _bound(conn: Connection) -> Config:
    cfg = config()
    cfg.attributes["connection"] = conn
    return cfg


async def _with_connection(url: str, fn: Callable[[Connection], T]) -> T:
    # NullPool: one connection for one command, closed when it is done.
    engine = create_async_engine(asyncpg_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            result = await conn.run_sync(fn)
            # alembic commits its own transaction; this ends the one reading the version
            # may have auto-begun.
            await conn.commit()
            return result
    finally:
        await engine.dispose()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # alembic's ``context`` and ``op`` are process-wide proxies: two migrations on two threads
    # of one process would share them. Serialise here; across processes, env.py's advisory
    # lock does the same job.
    with _IN_PROCESS:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jobline-migrate") as ex:
            return ex.submit(asyncio.run, coro).result()
