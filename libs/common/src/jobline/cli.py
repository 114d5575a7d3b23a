"""The ``jobline`` command: ``dev``, ``migrate`` and ``keys``."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer

from jobline import apikeys, db, devstack, kafka, keystore, migrate, topics
from jobline.errors import ConfigError, JoblineError
from jobline.settings import DatabaseSettings, KafkaSettings, RuntimeSettings, load

T = TypeVar("T")

app = typer.Typer(help="Jobline: durable background jobs.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _runtime() -> RuntimeSettings:
    try:
        return load(RuntimeSettings)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None


def _database_url() -> str:
    """JOBLINE_DATABASE_URL, else the running dev stack's database."""
    url = os.environ.get("JOBLINE_DATABASE_URL")
    if url:
        return url
    state = devstack.read_state(_runtime().data_dir)
    if state is None:
        raise _fail("JOBLINE_DATABASE_URL is not set and no dev stack is running (`make run`)")
    return state.database_url


@app.command()
def dev(
    partitions: Annotated[int, typer.Option(help="Partitions for topics it creates.")] = 4,
) -> None:
    """Run PostgreSQL, the broker and all four services on this machine until Ctrl-C."""
    runtime = _runtime()
    # The supervisor reports an unreachable broker itself, in one line; aiokafka's own
    # connection errors would only repeat it as noise (the services log theirs normally).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    prefix = os.environ.get("JOBLINE_TOPIC_PREFIX", "jobline")
    try:
        code = devstack.run(runtime.data_dir, prefix, partitions)
    except JoblineError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


@app.command("migrate")
def migrate_cmd(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations (to the dev stack's database unless JOBLINE_DATABASE_URL)."""
    url = _database_url()
    try:
        asyncio.run(db.check_database(url))
        migrate.upgrade(url, revision)
    except JoblineError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"database at {db.describe(url)} is at revision {migrate.current(url)}")


@topics_app.command("ensure")
def topics_ensure(
    queues: Annotated[str, typer.Option(help="Comma-separated queue names.")] = "default",
) -> None:
    """Create the work, DLQ, events and insights topics that do not exist yet."""
    try:
        settings = load(KafkaSettings)
        names = topics.core_topics(
            settings.topic_prefix, [topics.validate_queue_name(q) for q in queues.split(",")]
        )
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc), 2) from None
    created = _run(kafka.ensure_topics(settings, names))
    typer.echo(f"created: {', '.join(created) or 'nothing (all present)'}")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: jobs:write,jobs:read,...")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    expires_at: Annotated[
        datetime | None, typer.Option(help="When the key stops working (ISO 8601).")
    ] = None,
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    try:
        parsed = apikeys.parse_scopes(scopes)
        apikeys.validate_tenant(tenant)
    except JoblineError as exc:
        raise _fail(str(exc), 2) from None

    async def create() -> tuple[keystore.KeyRecord, str]:
        engine = db.create_engine(DatabaseSettings(database_url=_database_url()))
        try:
            async with db.transaction(engine) as conn:
                return await keystore.create_key(
                    conn, tenant_id=tenant, name=name, scopes=parsed, expires_at=expires_at
                )
        finally:
            await engine.dispose()

    record, plaintext = _run(create())
    typer.echo(plaintext)
    typer.echo(
        f"key {record.id} for tenant {record.tenant_id} "
        f"({', '.join(sorted(record.scopes))}); it is shown only once",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """List API keys (never their secrets)."""

    async def fetch() -> list[keystore.KeyRecord]:
        engine = db.create_engine(DatabaseSettings(database_url=_database_url()))
        try:
            async with db.transaction(engine) as conn:
                return await keystore.list_keys(conn, tenant)
        finally:
            await engine.dispose()

    for record in _run(fetch()):
        status = "revoked" if record.revoked_at else "active"
        typer.echo(
            f"{record.id}  {record.tenant_id:<16} {record.prefix}  {status:<8} "
            f"{','.join(sorted(record.scopes))}  {record.name}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[UUID, typer.Argument(help="The key's id.")]) -> None:
    """Revoke an API key; it stops working on the next request."""

    async def revoke() -> keystore.KeyRecord | None:
        engine = db.create_engine(DatabaseSettings(database_url=_database_url()))
        try:
            async with db.transaction(engine) as conn:
                return await keystore.revoke_key(conn, key_id)
        finally:
            await engine.dispose()

    if _run(revoke()) is None:
        raise _fail(f"no key {key_id}")
    typer.echo(f"revoked {key_id}")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except JoblineError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"database unreachable: {exc}") from None


__all__ = ["app"]
