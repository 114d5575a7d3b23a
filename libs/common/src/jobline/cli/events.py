"""``jobline events tail``: lifecycle events from ``<prefix>.events`` as they are published.

By default an operator's tool: it reads the topic itself (every tenant's events, hence
``--tenant``), with manual partition assignment rather than a consumer group, so it starts at
once on any broker and never disturbs a group. The broker comes from ``--bootstrap``,
JOBLINE_KAFKA_BOOTSTRAP or the running dev stack.

``--via-api`` reads the gateway's ``GET /v1/events/stream`` instead (JOBLINE_GATEWAY_URL,
JOBLINE_API_KEY): the API key's tenant's events only, for a host without Kafka access.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from jobline.cli.output import ExitCode, echo_json, fail, gateway
from jobline.core import cloudevent, eventstream, topics
from jobline.core.errors import InvalidEvent
from jobline.core.eventstream import EventFilter
from jobline.dev import devstack

app = typer.Typer(
    help="Lifecycle events (CloudEvents) straight from the broker. Exit codes: 0 ok; "
    "2 no broker address; 4 broker unreachable; 130 interrupted.",
    no_args_is_help=True,
)

# A waiting fetch on the embedded broker is answered only when it times out (see
# ARCHITECTURE.md): keep it short, so an event shows within this many ms.
FETCH_WAIT_MS = 100


def event_filter(
    types: list[str] | None,
    job_id: str | None,
    tenant: str | None,
    job_type: str | None,
    queue: str | None = None,
) -> EventFilter:
    """The filter of the options; an unknown event type is a usage error."""
    try:
        full = eventstream.event_types(types or [])
    except ValueError as exc:
        raise fail(str(exc), ExitCode.USAGE) from None
    return EventFilter(full, job_id, tenant, job_type, queue)


def event_line(event_type: str, time: str, data: dict[str, Any]) -> str:
    state = event_type.removeprefix(cloudevent.JOB_EVENT_PREFIX)
    error = data.get("error") or {}
    tail = f"  {error.get('class')}: {str(error.get('message'))[:80]}" if error else ""
    return (
        f"{time}  {state:<10} {data.get('job_id')}  {data.get('tenant', '-'):<12} "
        f"{data.get('type', '-'):<20} attempt {data.get('attempt')}/{data.get('max_attempts')}"
        f"{tail}"
    )


def _bootstrap(given: str | None) -> tuple[str, str]:
    prefix = os.environ.get("JOBLINE_TOPIC_PREFIX")
    if bootstrap := given or os.environ.get("JOBLINE_KAFKA_BOOTSTRAP"):
        return bootstrap, prefix or "jobline"
    from pathlib import Path

    state = devstack.read_state(Path(os.environ.get("JOBLINE_DATA_DIR", ".jobline")))
    if state is None:
        raise fail(
            "no broker: give --bootstrap, set JOBLINE_KAFKA_BOOTSTRAP or run the dev stack",
            ExitCode.USAGE,
        )
    return state.kafka_bootstrap, prefix or state.topic_prefix


@app.command("tail")
def tail(
    *,
    event_type: Annotated[
        list[str] | None,
        typer.Option(
            "--type", help="Only this event type, e.g. succeeded or jobline.job.dead (repeat)."
        ),
    ] = None,
    job: Annotated[str | None, typer.Option(help="Only this job's events.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's events.")] = None,
    job_type: Annotated[str | None, typer.Option(help="Only jobs of this type.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only jobs on this queue.")] = None,
    from_beginning: Annotated[
        bool, typer.Option(help="Start at the oldest retained event, not at the end.")
    ] = False,
    via_api: Annotated[
        bool,
        typer.Option(
            "--via-api",
            help="Read the gateway's event stream (GET /v1/events/stream) instead of the "
            "broker: the API key's tenant only, no Kafka access needed.",
        ),
    ] = False,
    last_event_id: Annotated[
        str | None,
        typer.Option(
            help="With --via-api: continue right after this stream position (an event's "
            "`stream_id` in --json output)."
        ),
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many matching events.")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="host:port of the broker.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each CloudEvent as one JSON line.")
    ] = False,
) -> None:
    """Print lifecycle events as they are published, filtered by type, job, tenant, queue."""
    wanted = event_filter(event_type, job, tenant, job_type, queue)
    if via_api:
        for option, given in (
            ("--tenant", tenant),
            ("--from-beginning", from_beginning),
            ("--bootstrap", bootstrap),
        ):
            if given:
                raise fail(f"{option} does not go with --via-api", ExitCode.USAGE)
        _tail_api(wanted, last_event_id, count, as_json)
        return
    if last_event_id is not None:
        raise fail("--last-event-id needs --via-api", ExitCode.USAGE)
    address, prefix = _bootstrap(bootstrap)

    def show(raw: bytes) -> bool:
        try:
            event = cloudevent.decode(raw)
        except InvalidEvent:
            return False
        data = cloudevent.data_of(event)
        kind = str(event.get_type())
        if not wanted.matches(kind, data):
            return False
        if as_json:
            echo_json(json.loads(raw), lines=True)
        else:
            stamp = event.get_time()
            typer.echo(event_line(kind, stamp.isoformat() if stamp else "-", data))
        return True

    try:
        asyncio.run(_tail(address, topics.events_topic(prefix), from_beginning, count, show))
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except OSError as exc:
        raise fail(f"broker at {address} unreachable: {exc}", ExitCode.UNREACHABLE) from None


def _tail_api(
    wanted: EventFilter, last_event_id: str | None, count: int | None, as_json: bool
) -> None:
    shown = 0
    with gateway() as client:
        stream = client.stream_events(
            event_types=sorted(wanted.types),
            job_id=wanted.job_id,
            job_type=wanted.job_type,
            queue=wanted.queue,
            last_event_id=last_event_id,
        )
        for streamed in stream:
            event = streamed.event
            if as_json:
                # The CloudEvent as on the topic, plus where the stream stood after it.
                cloud = event.model_dump(mode="json", by_alias=True, exclude_unset=True)
                echo_json({**cloud, "stream_id": streamed.id}, lines=True)
            else:
                data = event.data.model_dump(mode="json", by_alias=True, exclude_unset=True)
                typer.echo(event_line(event.type, event.time or "-", data))
            shown += 1
            if count is not None and shown >= count:
                return


async def _tail(
    bootstrap: str,
    topic: str,
    from_beginning: bool,
    count: int | None,
    show: Callable[[bytes], bool],
) -> None:
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from jobline.broker.kafka import make_consumer
    from jobline.settings import KafkaSettings

    # KafkaSettings: the JOBLINE_KAFKA_SASL_*/SSL_* variables apply here too.
    consumer = make_consumer(
        KafkaSettings(kafka_bootstrap=bootstrap),
        group_id=None,
        client_id="jobline-events-tail",
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise OSError(str(exc)) from None
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        shown = 0
        while count is None or shown < count:
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except KafkaConnectionError as exc:
                raise OSError(str(exc)) from None
            for records in batches.values():
                for record in records:
                    if record.value is not None and show(record.value):
                        shown += 1
                        if count is not None and shown >= count:
                            return
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> list[Any]:
    from jobline.broker.kafka import assignable_partitions

    found = await assignable_partitions(consumer, topic)
    if not found:
        raise OSError(f"topic {topic} does not exist (is the stack set up for this prefix?)")
    return found
