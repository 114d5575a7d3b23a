"""A SQLAlchemy async engine: the analyzer's store, until it moves to :class:`Database`.

Runtime code uses :class:`jobline.pg.db.Database` (asyncpg); see that module for why.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobline.settings import DatabaseSettings


def create_engine(settings: DatabaseSettings, *, application_name: str = "jobline") -> AsyncEngine:
    """A SQLAlchemy async engine (the analyzer's store, until it moves to :class:`Database`)."""
    return create_async_engine(
        settings.async_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            "server_settings": {"application_name": application_name},
            **tls_connect_args(settings),
        },
    )


def tls_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """asyncpg's ``ssl`` argument from ``JOBLINE_DB_SSLMODE``/``_SSLROOTCERT`` (SQLAlchemy
    connects with keyword arguments, not the URL asyncpg itself would read them from)."""
    mode, root = settings.db_sslmode, settings.db_sslrootcert
    if root is None:
        return {} if mode is None else {"ssl": mode}
    if mode == "disable":
        return {"ssl": mode}
    context = ssl.create_default_context(cafile=str(root))
    # libpq: verify-full checks the host name; verify-ca (and require with a root cert) do not.
    context.check_hostname = mode == "verify-full"
    return {"ssl": context}


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A SQLAlchemy connection inside a transaction (the analyzer's store)."""
    async with engine.begin() as conn:
        yield conn
