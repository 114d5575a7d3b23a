"""Operating the platform: ``dev``, ``migrate``, ``topics ensure``, ``admin-key``.

These talk to PostgreSQL and the broker directly (they set them up), unlike every other
command, which goes through the gateway's API. ``admin-key`` is how a new installation gets
its first key: every key after it is created through the gateway (``jobline keys create``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from jobline.broker import kafka
from jobline.cli.output import JsonFlag, echo_json
from jobline.core import topics
from jobline.core.apikeys import Scope
from jobline.core.errors import ConfigError, JoblineError
from jobline.dev import devstack
from jobline.pg import audit, db, keystore, migrate
from jobline.settings import DatabaseSettings, KafkaSettings, RuntimeSettings, load

T = TypeVar("T")

topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)


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


def migrate_cmd(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    as_json: JsonFlag = False,
) -> None:
    """Apply the database migrations (to the dev stack's database unless JOBLINE_DATABASE_URL)."""
    url = _database_url()
    try:
        asyncio.run(db.check_database(url))
        migrate.upgrade(url, revision)
    except JoblineError as exc:
        raise _fail(str(exc)) from None
    current = migrate.current(url)
    if as_json:
        echo_json({"database": db.describe(url), "revision": current})
        return
    typer.echo(f"database at {db.describe(url)} is at revision {current}")


def admin_key_cmd(
    tenant: Annotated[str, typer.Option(help="The operators' tenant.")] = "ops",
    name: Annotated[str, typer.Option(help="A label for the key.")] = "admin-key",
) -> None:
    """Create an API key with the admin scope straight in PostgreSQL (JOBLINE_DATABASE_URL) and
    print it once: a new installation's first key; create the others with `jobline keys`."""
    typer.echo(_run(_create_admin_key(_database_url(), tenant, name)))


async def _create_admin_key(url: str, tenant: str, name: str) -> str:
    """The key and its audit entry in one transaction, as the gateway creates keys."""
    async with (
        db.Database(DatabaseSettings(database_url=url), application_name="jobline-cli") as database,
        database.transaction() as conn,
    ):
        record, plaintext = await keystore.create_key(
            conn, tenant_id=tenant, name=name, scopes=frozenset({Scope.ADMIN})
        )
        who = audit.Actor(key_id=None, tenant_id=None, address="cli:jobline admin-key")
        detail = {"tenant": tenant, "name": name, "scopes": [Scope.ADMIN.value]}
        await audit.record(conn, who, "key.create", str(record.id), detail)
    return plaintext


@topics_app.command("ensure")
def topics_ensure(
    queues: Annotated[str, typer.Option(help="Comma-separated queue names.")] = "default",
    as_json: JsonFlag = False,
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
    if as_json:
        echo_json({"created": created, "present": [n for n in names if n not in created]})
        return
    typer.echo(f"created: {', '.join(created) or 'nothing (all present)'}")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except JoblineError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"database unreachable: {exc}") from None
