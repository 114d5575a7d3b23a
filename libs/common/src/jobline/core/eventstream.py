"""Lifecycle events as a Server-Sent Events stream (pure: no I/O).

The gateway's ``GET /v1/events/stream`` reads ``<prefix>.events`` itself and writes what it
selects here. Three things are decided in this module:

* **Which events** a stream shows: :class:`EventFilter` (the caller's tenant always, and the
  query's event types, job id, job type and queue).
* **Where a stream is**: :class:`Positions`, for every partition of the topic the offset of
  the next record to read. Every frame's ``id:`` is the positions right after its event, so
  ``Last-Event-ID`` resumes exactly after the last event a client saw, with no loss and no
  duplicate. The text form is ``p<partition>-<offset>`` joined by ``.`` (``p0-123.p1-45``);
  clients should treat it as opaque. A partition the id does not name (the topic grew since)
  is read from its beginning.
* **What goes on the wire**: :func:`event_frame`, :func:`position_frame`, :func:`comment`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jobline.core import jsontext
from jobline.core.cloudevent import JOB_EVENT_PREFIX
from jobline.core.job import JobState

# A claim's event is "started"; every other state's event names the state.
EVENT_NAMES: Final = frozenset(
    {"started", *(s.value for s in JobState if s is not JobState.RUNNING)}
)
MAX_ID_LENGTH: Final = 16_384
MAX_PARTITIONS: Final = 1024

_POSITION: Final = re.compile(r"p(\d{1,4})-(\d{1,19})")


class InvalidStreamId(ValueError):
    """The Last-Event-ID is not one this API issued."""


@dataclass(frozen=True, slots=True)
class Positions:
    """For each partition, the offset of the next record to read."""

    offsets: Mapping[int, int]

    def encode(self) -> str:
        return ".".join(f"p{p}-{o}" for p, o in sorted(self.offsets.items()))

    @classmethod
    def decode(cls, text: str) -> Positions:
        """The positions of an ``id:`` this module wrote; :class:`InvalidStreamId` if not."""
        text = text.strip()
        if not text or len(text) > MAX_ID_LENGTH:
            raise InvalidStreamId("empty or too long")
        offsets: dict[int, int] = {}
        for part in text.split("."):
            match = _POSITION.fullmatch(part)
            if match is None:
                raise InvalidStreamId(f"bad position {part[:40]!r}")
            partition, offset = int(match[1]), int(match[2])
            if partition >= MAX_PARTITIONS or partition in offsets or offset >= 2**63:
                raise InvalidStreamId(f"bad position {part[:40]!r}")
            offsets[partition] = offset
        return cls(offsets)

    def advanced(self, partition: int, offset: int) -> Positions:
        """These positions after the record at ``offset`` of ``partition`` was read."""
        return Positions({**self.offsets, partition: offset + 1})


def event_types(names: Iterable[str]) -> frozenset[str]:
    """Full CloudEvent types of short (``succeeded``) or full (``jobline.job.dead``) names;
    ``ValueError`` naming an unknown one."""
    out = set()
    for name in names:
        short = name.strip().removeprefix(JOB_EVENT_PREFIX)
        if short not in EVENT_NAMES:
            known = ", ".join(sorted(EVENT_NAMES))
            raise ValueError(f"unknown event type {name.strip()!r} (known: {known})")
        out.add(JOB_EVENT_PREFIX + short)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which lifecycle events to show; each field given must match (``types``: any of)."""

    types: frozenset[str] = frozenset()
    job_id: str | None = None
    tenant: str | None = None
    job_type: str | None = None
    queue: str | None = None

    def matches(self, event_type: str, data: Mapping[str, Any]) -> bool:
        return (
            (not self.types or event_type in self.types)
            and (self.tenant is None or data.get("tenant") == self.tenant)
            and (self.job_id is None or data.get("job_id") == self.job_id)
            and (self.job_type is None or data.get("type") == self.job_type)
            and (self.queue is None or data.get("queue") == self.queue)
        )


@dataclass(frozen=True, slots=True)
class Selected:
    """An event a stream shows: its type and its CloudEvent as one line of JSON."""

    type: str
    json: bytes


def select(raw: bytes | None, wanted: EventFilter) -> Selected | None:
    """The record's event if it is a lifecycle event ``wanted`` matches, else None (also
    for anything that is not a structured-mode CloudEvent with an object as data)."""
    if raw is None:
        return None
    # Cheap necessary condition first: every stream reads every tenant's events, and a
    # tenant id (a-z, 0-9, '_', '-') appears verbatim in the JSON of its own events.
    if wanted.tenant is not None and wanted.tenant.encode() not in raw:
        return None
    try:
        event = jsontext.loads(raw)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    event_type, data = event.get("type"), event.get("data")
    if not isinstance(event_type, str) or not isinstance(data, dict):
        return None
    if not event_type.startswith(JOB_EVENT_PREFIX) or not wanted.matches(event_type, data):
        return None
    # One `data:` line: a producer's JSON may be pretty-printed; ours never is.
    line = raw.strip() if b"\n" not in raw and b"\r" not in raw else jsontext.dumps(event)
    return Selected(event_type, line)


def event_frame(positions: Positions, selected: Selected) -> bytes:
    """``id:``, ``event:`` and ``data:`` of one event."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        positions.encode().encode(),
        selected.type.encode(),
        selected.json,
    )


def position_frame(positions: Positions, *, retry_ms: int | None = None) -> bytes:
    """An ``id:`` without data: an EventSource records it as its last event id and
    dispatches nothing, so a reconnect resumes from here (past events the filter skipped)."""
    retry = b"retry: %d\n" % retry_ms if retry_ms is not None else b""
    return b"%sid: %s\n\n" % (retry, positions.encode().encode())


def comment(text: str) -> bytes:
    """A comment line (a heartbeat): clients ignore it, proxies see traffic."""
    return b": %s\n\n" % text.replace("\n", " ").encode()
