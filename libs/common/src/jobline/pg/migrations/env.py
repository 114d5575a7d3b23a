"""Alembic environment for Jobline.

Normally run through :mod:`jobline.migrate`, which opens the connection and passes it in
``config.attributes["connection"]``. Run by the alembic CLI instead, the URL comes from
``config.attributes["url"]``, the ``sqlalchemy.url`` option or ``JOBLINE_DATABASE_URL``.

Every online run takes ``pg_advisory_xact_lock`` first, inside the migration transaction
(PostgreSQL DDL is transactional): a second process that starts upgrading at the same time
waits, then reads the version the first one committed and has nothing left to do.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from jobline.pg.migrate import ADVISORY_LOCK_KEY
from jobline.pg.tables import metadata
from jobline.settings import asyncpg_url

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("JOBLINE_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set JOBLINE_DATABASE_URL")
    return asyncpg_url(str(url))


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
