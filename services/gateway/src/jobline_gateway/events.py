"""``GET /v1/events/stream``: the calling key's tenant's lifecycle events as Server-Sent Events.

Each stream reads ``<prefix>.events`` with a consumer of its own, partitions assigned by hand
(no consumer group: it starts at once, disturbs no group, and keeps no offsets on the broker),
from the end of the topic or from the positions a ``Last-Event-ID`` names. It keeps the
tenant's events the query asks for (see :mod:`jobline.core.eventstream`) and writes one frame
per event; a comment every ``gateway_event_heartbeat_seconds`` keeps an idle stream open. A
stream ends when the client goes away (the response is cancelled) or when the process is told
to stop: uvicorn waits for open responses before the lifespan's shutdown, so the stream
watches for that itself and ends, and the client reconnects with its ``Last-Event-ID``.

Every stream reads every tenant's events: the number open per gateway process is bounded
(``gateway_event_streams_max``, 503 beyond), and one tenant's share of them too
(``gateway_event_streams_per_tenant_max``, 429 beyond).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated, Any, Final
from uuid import UUID

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Header, Query, Request
from pydantic.json_schema import models_json_schema
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from jobline.api.events import (
    EVENT_TYPE_PATTERN,
    STREAM_ID_DESCRIPTION,
    STREAM_ID_PATTERN,
    LifecycleEvent,
    example,
)
from jobline.api.fields import QUEUE_PATTERN, TYPE_PATTERN
from jobline.broker.kafka import assignable_partitions, ensure_topics, make_consumer
from jobline.core import eventstream, jsontext, topics
from jobline.core.errors import JoblineError
from jobline.core.eventstream import EventFilter, InvalidStreamId, Positions
from jobline.web import service
from jobline.web.problems import FieldError, Problem, ProblemError, responses
from jobline_gateway.deps import KnownQuery, Reader, SettingsDep
from jobline_gateway.metrics import EVENT_STREAMS, EVENT_STREAMS_REFUSED
from jobline_gateway.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[KnownQuery])

MEDIA_TYPE: Final = "text/event-stream"
# How long a stream blocks on the broker before it looks at the clock and at shutdown.
POLL_MS: Final = 500
MAX_RECORDS: Final = 500
# What an EventSource waits before it reconnects after the stream ended.
RETRY_MS: Final = 2000
# Starting a stream: the broker's metadata, assignment and the end offsets.
START_TIMEOUT: Final = 10.0
# A refused stream may try again after this many seconds.
BUSY_RETRY_AFTER: Final = 5


class StreamSlots:
    """How many streams this process has open: at most ``limit`` in all (the process's
    capacity) and ``per_tenant`` for one tenant (so one cannot take them all)."""

    def __init__(self, limit: int, per_tenant: int) -> None:
        self.limit = limit
        self.per_tenant = per_tenant
        self.open = 0
        self.by_tenant: dict[str, int] = {}

    def take(self, tenant: str) -> None:
        """Count a new stream of ``tenant``, or refuse it: 429 over the tenant's share, 503
        over the process's capacity, each with Retry-After."""
        if self.by_tenant.get(tenant, 0) >= self.per_tenant:
            EVENT_STREAMS_REFUSED.labels("tenant").inc()
            raise ProblemError(
                429,
                f"The tenant has {self.per_tenant} event streams open on this gateway.",
                kind="too-many-streams",
                headers={"Retry-After": str(BUSY_RETRY_AFTER)},
            )
        if self.open >= self.limit:
            EVENT_STREAMS_REFUSED.labels("gateway").inc()
            raise ProblemError(
                503,
                f"This gateway has {self.limit} event streams open; try again shortly.",
                kind="too-many-streams",
                headers={"Retry-After": str(BUSY_RETRY_AFTER)},
            )
        self.open += 1
        self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + 1
        EVENT_STREAMS.set(self.open)

    def give(self, tenant: str) -> None:
        self.open -= 1
        left = self.by_tenant.pop(tenant, 1) - 1
        if left:
            self.by_tenant[tenant] = left
        EVENT_STREAMS.set(self.open)


class EventStreamResponse(StreamingResponse):
    """A streaming response that releases its consumer and slot however it ends (finished,
    cancelled by the client's disconnect, or never started)."""

    def __init__(
        self, frames: AsyncGenerator[bytes, None], release: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(
            frames,
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._frames = frames
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Closed here, not by the garbage collector: a client that left while a frame
            # was being sent leaves the generator suspended at its `yield`.
            await asyncio.shield(self._close())

    async def _close(self) -> None:
        try:
            await self._frames.aclose()
        finally:
            await self._release()


_STREAM_DOC: Final = (
    "Each event is a frame of `id:` (the stream position, for `Last-Event-ID`), `event:` (the "
    "CloudEvent type, e.g. `jobline.job.succeeded`) and one `data:` line holding the "
    "structured-mode CloudEvent (a `LifecycleEvent`). The first frame (`retry:` and `id:`, no "
    "data) marks where the stream starts; later frames of only a comment (`: heartbeat`, "
    "every 15 s) may carry an `id:` too, past events the filters skipped. The stream ends when "
    "the gateway shuts down: reconnect with `Last-Event-ID`. The shape of a `data:` line is "
    "the schema `LifecycleEvent`."
)


def openapi_components(schema: dict[str, Any]) -> dict[str, Any]:
    """Add ``LifecycleEvent`` (the JSON of each ``data:`` line) to the document's schemas:
    the stream's own media type is text and cannot reference it."""
    _, definitions = models_json_schema(
        [(LifecycleEvent, "serialization")], ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault(name, definition)
    return schema


def _example_stream() -> str:
    event = example()
    return (
        "retry: 2000\nid: p0-41.p1-17\n\n"
        f"id: p0-42.p1-17\nevent: {event['type']}\ndata: {jsontext.dumps_text(event)}\n\n"
        ": heartbeat\n\n"
    )


@router.get(
    "/stream",
    operation_id="streamEvents",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": _STREAM_DOC,
            "content": {
                MEDIA_TYPE: {
                    "schema": {"type": "string"},
                    "example": _example_stream(),
                },
            },
        },
        **responses(),
        429: {
            "model": Problem,
            "description": "Rate limit exceeded, or the tenant has "
            "`gateway_event_streams_per_tenant_max` streams open on this gateway; see "
            "Retry-After.",
        },
        503: {
            "model": Problem,
            "description": "PostgreSQL or the broker is unavailable, or this gateway has "
            "`gateway_event_streams_max` streams open; see Retry-After.",
        },
    },
)
async def stream_events(  # noqa: PLR0917 - FastAPI injects each by name
    request: Request,
    principal: Reader,
    settings: SettingsDep,
    event_type: Annotated[
        str | None,
        Query(
            pattern=EVENT_TYPE_PATTERN,
            description="Only these event types, comma-separated: `succeeded,dead` or "
            "`jobline.job.succeeded` (scheduled, queued, started, retrying, succeeded, dead, "
            "cancelled).",
        ),
    ] = None,
    job_id: Annotated[UUID | None, Query(description="Only this job's events.")] = None,
    job_type: Annotated[
        str | None, Query(pattern=TYPE_PATTERN, description="Only jobs of this type.")
    ] = None,
    queue: Annotated[
        str | None, Query(pattern=QUEUE_PATTERN, description="Only jobs on this queue.")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(
            pattern=STREAM_ID_PATTERN,
            description="For clients that cannot set the `Last-Event-ID` header (the "
            "header wins when both are given). " + STREAM_ID_DESCRIPTION,
        ),
    ] = None,
    last_event_id_header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=STREAM_ID_PATTERN,
            description=STREAM_ID_DESCRIPTION,
        ),
    ] = None,
) -> Any:
    """Stream the tenant's lifecycle events (Server-Sent Events), resumable with Last-Event-ID."""
    wanted = EventFilter(
        types=eventstream.event_types(event_type.split(",")) if event_type else frozenset(),
        job_id=str(job_id) if job_id else None,
        tenant=principal.tenant_id,  # never another tenant's: the filter, not a parameter
        job_type=job_type,
        queue=queue,
    )
    resume = _resume_point(last_event_id_header, last_event_id)
    slots: StreamSlots = request.app.state.event_streams
    slots.take(principal.tenant_id)
    consumer = _consumer(settings)
    released = False

    async def release() -> None:
        nonlocal released
        if not released:
            released = True
            slots.give(principal.tenant_id)
            try:
                await consumer.stop()
            except Exception:  # closing a broken connection; nothing is lost
                log.warning("stopping an event stream's consumer failed", exc_info=True)

    try:
        positions = await asyncio.wait_for(
            _position(consumer, settings, resume),
            START_TIMEOUT,
        )
    except (KafkaError, JoblineError, TimeoutError, OSError) as exc:
        await release()
        raise ProblemError(
            503,
            f"The event stream cannot start: {exc or type(exc).__name__}.",
            kind="broker-unavailable",
            headers={"Retry-After": str(BUSY_RETRY_AFTER)},
        ) from None
    except BaseException:
        await release()
        raise
    frames = _frames(consumer, positions, wanted, settings.gateway_event_heartbeat_seconds)
    return EventStreamResponse(frames, release)


def _resume_point(header: str | None, query: str | None) -> Positions | None:
    # The header wins: an EventSource opened with ?last_event_id= reconnects to the same URL
    # and sends the newer position in the header.
    text, location, name = (
        (header, "header", "Last-Event-ID") if header else (query, "query", "last_event_id")
    )
    if not text:
        return None
    try:
        return Positions.decode(text)
    except InvalidStreamId as exc:
        raise ProblemError(
            422,
            f"Invalid {name}: {exc}.",
            kind="validation",
            title="Invalid request",
            errors=[FieldError(field=name, location=location, message=str(exc))],
        ) from None


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return make_consumer(
        settings,
        group_id=None,
        client_id=f"{settings.kafka_client_id}-gateway-events",
        fetch_max_wait_ms=settings.gateway_events_fetch_max_wait_ms,
        # A position past the end (a re-created topic, the dev broker restarted) or before the
        # oldest retained record: read what there is.
        auto_offset_reset="earliest",
    )


class TopicMissing(OSError):
    """The events topic does not exist (yet)."""


async def _position(
    consumer: AIOKafkaConsumer, settings: Settings, resume: Positions | None
) -> Positions:
    """Start ``consumer``, assign every partition of the events topic and seek: to the end,
    or to ``resume`` (a partition it does not name from its beginning: the topic grew since).
    A deployment whose relay has not created the topic yet gets it created here, as the relay
    would (the same settings, so the same partition count)."""
    topic = topics.events_topic(settings.topic_prefix)
    await consumer.start()
    partitions = await assignable_partitions(consumer, topic, attempts=3)
    if not partitions:
        await ensure_topics(settings, [topic])
        partitions = await assignable_partitions(consumer, topic)
    if not partitions:
        raise TopicMissing(f"no topic {topic}")
    consumer.assign(partitions)
    if resume is None:
        await consumer.seek_to_end(*partitions)
    else:
        fresh = [tp for tp in partitions if tp.partition not in resume.offsets]
        for tp in partitions:
            if tp.partition in resume.offsets:
                consumer.seek(tp, resume.offsets[tp.partition])
        if fresh:
            await consumer.seek_to_beginning(*fresh)
    return Positions({tp.partition: await consumer.position(tp) for tp in partitions})


async def _frames(
    consumer: AIOKafkaConsumer, start: Positions, wanted: EventFilter, heartbeat: float
) -> AsyncGenerator[bytes, None]:
    offsets = dict(start.offsets)  # the live position; each frame's id is a snapshot of it
    yield eventstream.position_frame(start, retry_ms=RETRY_MS)
    sent = dict(offsets)
    quiet_since = time.monotonic()
    while not service.draining():
        try:
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
        except KafkaError as exc:
            # End the stream cleanly: the client reconnects from its last id (and is told
            # 503 while the broker stays away).
            log.warning("an event stream lost the broker: %s", exc)
            return
        for tp, records in batches.items():
            for record in records:
                offsets[tp.partition] = record.offset + 1
                selected = eventstream.select(record.value, wanted)
                if selected is not None:
                    yield eventstream.event_frame(Positions(offsets), selected)
                    sent = dict(offsets)
                    quiet_since = time.monotonic()
        if time.monotonic() - quiet_since >= heartbeat:
            frame = eventstream.comment("heartbeat")
            if offsets != sent:  # events were skipped since the last id: move the client on
                frame += eventstream.position_frame(Positions(offsets))
                sent = dict(offsets)
            yield frame
            quiet_since = time.monotonic()
