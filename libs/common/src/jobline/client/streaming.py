"""Reading ``GET /v1/events/stream``: the Server-Sent Events parser (the WHATWG rules) and
the events it yields. Pure: the sync and async clients feed it lines and do the I/O.

A frame's ``id:`` is the stream's position; the client keeps the last one and sends it as
``Last-Event-ID`` when it reconnects, so a dropped connection or a gateway restart loses and
repeats nothing. Frames with an ``id:`` and no data (the start of a stream, some heartbeats)
move that position without yielding an event.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from jobline.api.events import LifecycleData, LifecycleEvent
from jobline.client._transport import RetryPolicy

LAST_EVENT_ID_HEADER: Final = "Last-Event-ID"
# Four heartbeats (the gateway sends one every 15 s): a stream silent this long is dead.
DEFAULT_READ_TIMEOUT: Final = 60.0
# How long to wait before reconnecting after the gateway ended a stream (it sends `retry:`).
DEFAULT_RECONNECT_SECONDS: Final = 2.0


@dataclass(frozen=True, slots=True)
class Frame:
    """One dispatched frame: the position after it, its event name and data (None: none)."""

    id: str | None
    event: str | None
    data: str | None


class FrameParser:
    """Lines in, frames out (``feed`` returns a frame at each blank line)."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> Frame | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: a heartbeat
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Frame:
        data = "\n".join(self._data) if self._data else None
        frame = Frame(self.last_id, self._event, data)
        self._event, self._data = None, []
        return frame


@dataclass(frozen=True, slots=True)
class StreamedEvent:
    """A lifecycle event read from the gateway's stream.

    ``id`` is the stream's position after this event: pass it as ``last_event_id`` to a new
    stream to continue right after it (opaque; not the CloudEvent's own id).
    """

    id: str
    event: LifecycleEvent

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def data(self) -> LifecycleData:
        return self.event.data

    @property
    def job_id(self) -> str:
        return self.event.data.job_id

    @property
    def state(self) -> str:
        return self.event.data.state


def event_of(frame: Frame) -> StreamedEvent | None:
    """The event a frame carries, or None for a frame that only moves the position."""
    if frame.data is None:
        return None
    return StreamedEvent(frame.id or "", LifecycleEvent.model_validate_json(frame.data))


def stream_params(
    *,
    event_types: Sequence[str] | str | None,
    job_id: object | None,
    job_type: str | None,
    queue: str | None,
) -> dict[str, str | None]:
    """The query of ``GET /v1/events/stream`` (event types comma-separated)."""
    types = (
        event_types
        if isinstance(event_types, str) or event_types is None
        else ",".join(event_types)
    )
    return {
        "event_type": types or None,
        "job_id": str(job_id) if job_id is not None else None,
        "job_type": job_type,
        "queue": queue,
    }


class Reconnects:
    """When to connect again after a failure: the client's :class:`RetryPolicy` (full
    jitter, ``Retry-After``, attempts and time bounded) over failures in a row; a stream that
    connected starts the count again."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float], rng: random.Random):
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.failures = 0
        self._since: float | None = None

    def connected(self) -> None:
        self.failures, self._since = 0, None

    def after_failure(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next try, or None: give up."""
        now = self.clock()
        if self._since is None:
            self._since = now
        self.failures += 1
        return self.policy.delay(
            attempt=self.failures, elapsed=now - self._since, rng=self.rng, retry_after=retry_after
        )


def reconnect_delay(parser: FrameParser) -> float:
    """After the gateway ended a stream: what its ``retry:`` said, else the default."""
    if parser.retry_ms is None:
        return DEFAULT_RECONNECT_SECONDS
    return parser.retry_ms / 1000
