"""The ``jobline`` command: ``dev``, ``migrate``, ``keys``, and ``schedules``/``jobs`` (which talk
to the gateway over HTTP: JOBLINE_GATEWAY_URL, JOBLINE_API_KEY or the dev stack's key)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer

from jobline.broker import kafka
from jobline.core import apikeys, topics
from jobline.core.errors import ConfigError, JoblineError
from jobline.dev import devstack
from jobline.pg import db, keystore, migrate
from jobline.pg.db import Database
from jobline.settings import DatabaseSettings, KafkaSettings, RuntimeSettings, load

T = TypeVar("T")

app = typer.Typer(help="Jobline: durable background jobs.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
schedules_app = typer.Typer(
    help="Recurring schedules, through the gateway (JOBLINE_GATEWAY_URL, JOBLINE_API_KEY).",
    no_args_is_help=True,
)
app.add_typer(schedules_app, name="schedules")
jobs_app = typer.Typer(
    help="Submit and inspect jobs, through the gateway (JOBLINE_GATEWAY_URL, JOBLINE_API_KEY).",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")


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
        async with (
            Database(DatabaseSettings(database_url=_database_url())) as database,
            database.transaction() as conn,
        ):
            return await keystore.create_key(
                conn, tenant_id=tenant, name=name, scopes=parsed, expires_at=expires_at
            )

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
        async with (
            Database(DatabaseSettings(database_url=_database_url())) as database,
            database.connection() as conn,
        ):
            return await keystore.list_keys(conn, tenant)

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
        async with (
            Database(DatabaseSettings(database_url=_database_url())) as database,
            database.connection() as conn,
        ):
            return await keystore.revoke_key(conn, key_id)

    if _run(revoke()) is None:
        raise _fail(f"no key {key_id}")
    typer.echo(f"revoked {key_id}")


# --- through the gateway ----------------------------------------------------------------


def _gateway() -> Any:
    from jobline.client import Client, GatewayError

    try:
        return Client()
    except GatewayError as exc:
        raise _fail(str(exc), 2) from None


def _call(action: Callable[[Any], T]) -> T:
    """Run ``action(client)``; a refused or failed request is one line on stderr, exit 1."""
    from jobline.client import GatewayError

    client = _gateway()
    try:
        return action(client)
    except GatewayError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _fail(f"{option} is not valid JSON: {exc}", 2) from None
    if not isinstance(value, dict):
        raise _fail(f"{option} must be a JSON object", 2)
    return value


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _timing(schedule: dict[str, Any]) -> str:
    if schedule.get("cron"):
        return f"cron '{schedule['cron']}' {schedule['timezone']}"
    return f"every {schedule['interval_seconds']}s"


def _schedule_line(s: dict[str, Any]) -> str:
    state = "paused" if s["paused"] else "active"
    return (
        f"{s['id']}  {s['name']:<24} {state:<7} {_timing(s):<36} "
        f"next {s['next_fire_at'] or '-'}  job {s['job']['type']}"
    )


@schedules_app.command("create")
def schedules_create(
    name: Annotated[str, typer.Argument(help="Unique per tenant.")],
    *,
    job_type: Annotated[str, typer.Option("--type", help="The job type (handler name).")],
    cron: Annotated[
        str | None, typer.Option(help="Cron expression: 5 fields, or 6 with seconds first.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron.")] = "UTC",
    every: Annotated[
        int | None, typer.Option(help="Fire every this many seconds (instead of --cron).")
    ] = None,
    payload: Annotated[str, typer.Option(help="The job's payload, a JSON object.")] = "{}",
    queue: Annotated[str | None, typer.Option(help="The job's queue.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="The job's attempt budget.")] = None,
    timeout: Annotated[float | None, typer.Option(help="The job's timeout in seconds.")] = None,
    misfire: Annotated[
        str | None, typer.Option(help="Missed times: skip, fire_once or catch_up.")
    ] = None,
    catch_up_limit: Annotated[int | None, typer.Option(help="catch_up: at most this many.")] = None,
    overlap: Annotated[str | None, typer.Option(help="allow or skip_if_running.")] = None,
    start_at: Annotated[str | None, typer.Option(help="No fire before (ISO 8601).")] = None,
    end_at: Annotated[str | None, typer.Option(help="No fire after (ISO 8601).")] = None,
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the schedule as JSON.")] = False,
) -> None:
    """Create a schedule: --cron (with --timezone) or --every SECONDS, and the job's --type."""
    job: dict[str, Any] = {"type": job_type, "payload": _json_object(payload, "--payload")}
    for key, value in (
        ("queue", queue),
        ("max_attempts", max_attempts),
        ("timeout_seconds", timeout),
    ):
        if value is not None:
            job[key] = value
    body: dict[str, Any] = {"name": name, "job": job, "paused": paused}
    if cron is not None:
        body["cron"] = cron
        body["timezone"] = timezone
    if every is not None:
        body["interval_seconds"] = every
    for key, value in (
        ("misfire_policy", misfire),
        ("catch_up_limit", catch_up_limit),
        ("overlap_policy", overlap),
        ("start_at", start_at),
        ("end_at", end_at),
    ):
        if value is not None:
            body[key] = value
    created = _call(lambda c: c.create_schedule(body))
    if as_json:
        _echo_json(created)
        return
    typer.echo(created["id"])
    typer.echo(
        f"schedule {created['name']!r}: {_timing(created)}, next fire {created['next_fire_at']}",
        err=True,
    )


@schedules_app.command("list")
def schedules_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the schedules as JSON.")] = False,
) -> None:
    """List the tenant's schedules: id, name, state, timing, next fire, job type."""
    found = _call(lambda c: list(c.list_schedules()))
    if as_json:
        _echo_json(found)
        return
    for schedule in found:
        typer.echo(_schedule_line(schedule))


def _schedule_action(id_or_name: str, action: str) -> dict[str, Any]:
    def run(client: Any) -> dict[str, Any]:
        schedule = client.find_schedule(id_or_name)
        result: dict[str, Any] = getattr(client, f"{action}_schedule")(schedule["id"])
        return result or schedule

    return _call(run)


ScheduleRef = Annotated[str, typer.Argument(help="The schedule's id or name.")]


@schedules_app.command("pause")
def schedules_pause(schedule: ScheduleRef) -> None:
    """Stop firing a schedule (its pending fire time is kept for resume)."""
    paused = _schedule_action(schedule, "pause")
    typer.echo(f"paused {paused['name']} ({paused['id']})")


@schedules_app.command("resume")
def schedules_resume(schedule: ScheduleRef) -> None:
    """Fire again from now; times missed while paused run as the misfire policy says."""
    resumed = _schedule_action(schedule, "resume")
    typer.echo(f"resumed {resumed['name']} ({resumed['id']}); next fire {resumed['next_fire_at']}")


@schedules_app.command("delete")
def schedules_delete(schedule: ScheduleRef) -> None:
    """Delete a schedule; the jobs it created stay."""
    deleted = _schedule_action(schedule, "delete")
    typer.echo(f"deleted {deleted['name']} ({deleted['id']})")


@schedules_app.command("next")
def schedules_next(
    schedule: ScheduleRef,
    count: Annotated[int, typer.Option(help="How many fire times.")] = 5,
    after: Annotated[str | None, typer.Option(help="After this time (ISO 8601).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """The next fire times of a schedule, in its time zone and in UTC."""

    def run(client: Any) -> dict[str, Any]:
        found = client.find_schedule(schedule)
        result: dict[str, Any] = client.next_fires(found["id"], count, after)
        return result

    preview = _call(run)
    if as_json:
        _echo_json(preview)
        return
    for fire in preview["fires"]:
        typer.echo(f"{fire['local']}  ({preview['timezone']})  {fire['utc']}")


@jobs_app.command("submit")
def jobs_submit(
    job_type: Annotated[str, typer.Argument(help="The job type (handler name).")],
    payload: Annotated[str, typer.Option(help="The payload, a JSON object.")] = "{}",
    queue: Annotated[str | None, typer.Option(help="The queue.")] = None,
    delay: Annotated[float | None, typer.Option(help="Run no sooner than in this many s.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key.")] = None,
) -> None:
    """Submit a job; prints its id."""
    job: dict[str, Any] = {"type": job_type, "payload": _json_object(payload, "--payload")}
    if queue is not None:
        job["queue"] = queue
    if delay is not None:
        job["delay_seconds"] = delay
    submitted = _call(lambda c: c.submit_job(job, idempotency_key=idempotency_key))
    typer.echo(submitted["id"])


@jobs_app.command("get")
def jobs_get(job_id: Annotated[str, typer.Argument(help="The job's id.")]) -> None:
    """A job as JSON: status, attempts, timings, last error, result."""
    _echo_json(_call(lambda c: c.get_job(job_id)))


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except JoblineError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"database unreachable: {exc}") from None


__all__ = ["app"]
