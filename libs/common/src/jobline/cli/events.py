"""``jobline events tail``: lifecycle events from ``<prefix>.events`` as they are published.

An operator's tool: it reads the topic itself (every tenant's events, hence ``--tenant``),
with manual partition assignment rather than a consumer group, so it starts at once on any
broker and never disturbs a group. The broker comes from ``--bootstrap``,
JOBLINE_KAFKA_BOOTSTRAP or the running dev stack.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from jobline.cli.output import ExitCode, echo_json, fail
from jobline.core import cloudevent, topics
from jobline.core.errors import InvalidEvent
from jobline.dev import devstack

app = typer.Typer(
    help="Lifecycle events (CloudEvents) straight from the broker. Exit codes: 0 ok; "
    "2 no broker address; 4 broker unreachable; 130 interrupted.",
    no_args_is_help=True,
)

# A waiting fetch on the embedded broker is answered only when it times out (see
# ARCHITECTURE.md): keep it short, so an event shows within this many ms.
FETCH_WAIT_MS = 100


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to show; each given field must match."""

    types: frozenset[str] = frozenset()
    job_id: str | None = None
    tenant: str | None = None
    job_type: str | None = None

    @classmethod
    def of(
        cls,
        types: list[str] | None,
        job_id: str | None,
        tenant: str | None,
        job_type: str | None,
    ) -> EventFilter:
        full = {
            t if t.startswith(cloudevent.JOB_EVENT_PREFIX) else cloudevent.JOB_EVENT_PREFIX + t
            for t in types or []
        }
        return cls(frozenset(full), job_id, tenant, job_type)

    def matches(self, event_type: str, data: dict[str, Any]) -> bool:
        return (
            (not self.types or event_type in self.types)
            and (self.job_id is None or data.get("job_id") == self.job_id)
            and (self.tenant is None or data.get("tenant") == self.tenant)
            and (self.job_type is None or data.get("type") == self.job_type)
        )


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
    from_beginning: Annotated[
        bool, typer.Option(help="Start at the oldest retained event, not at the end.")
    ] = False,
    count: Annotated[int | None, typer.Option(help="Stop after this many matching events.")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="host:port of the broker.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each CloudEvent as one JSON line.")
    ] = False,
) -> None:
    """Print lifecycle events as they are published, filtered by type, job, tenant."""
    address, prefix = _bootstrap(bootstrap)
    wanted = EventFilter.of(event_type, job, tenant, job_type)

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
    from aiokafka import TopicPartition

    for _ in range(20):  # metadata for a topic may take a moment after start
        if topic in await consumer.topics():  # refreshes the cluster metadata
            found = consumer.partitions_for_topic(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
        await asyncio.sleep(0.1)
    raise OSError(f"topic {topic} does not exist (is the stack set up for this prefix?)")
