"""Topic names, the one place they are written. Pure: no I/O.

The state machine speaks in *logical* names (:func:`work` "jobs.<queue>", :data:`DLQ`,
:data:`EVENTS`, :data:`INSIGHTS`); the edge that publishes (the outbox relay) turns them into
the deployment's topic names with :func:`resolve` (``<prefix>.<logical>``), so the prefix
never leaks into the domain. The ``*_topic(prefix, ...)`` helpers are the resolved names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

WORK_PREFIX = "jobs."
"""Logical names of work topics start with this; the rest is the queue name (and lane)."""

PRIORITIES: Final = range(10)
"""A job's priority: 0 (the default) to 9; higher starts first."""

# Priority lanes: a partition is first in, first out, so priority cannot be a field the broker
# sorts by. Each priority above 0 has a lane of its own, ``jobs.<queue>.p<N>``, and a worker
# always takes from the highest lane that has a message (jobline_worker.consumer). Priority 0
# keeps the queue's plain topic, so a deployment that never uses priorities publishes and
# consumes exactly what it did before.
_LANE_MARK = ".p"

DLQ = "jobs.dlq"
EVENTS = "events"
INSIGHTS = "insights"

_QUEUE_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_RESERVED_QUEUES = frozenset({"dlq"})


def validate_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise ``ValueError``."""
    if not _QUEUE_NAME.fullmatch(name):
        raise ValueError(f"invalid queue name {name!r}: use 1-64 of a-z, 0-9, '_' and '-'")
    if name in _RESERVED_QUEUES:
        raise ValueError(f"invalid queue name {name!r}: reserved")
    return name


def work(queue: str, priority: int = 0) -> str:
    """The logical name of ``queue``'s work topic for ``priority``, as the state machine
    emits it."""
    return WORK_PREFIX + validate_queue_name(queue) + _lane_suffix(priority)


def is_work(logical: str) -> bool:
    """Whether ``logical`` names a work topic (the dead-letter topic is not one)."""
    return logical.startswith(WORK_PREFIX) and logical != DLQ


def queue_of(logical: str) -> str:
    """The queue of a logical work topic name (``jobs.<queue>`` or a lane of it)."""
    if not is_work(logical):
        raise ValueError(f"{logical!r} is not a work topic")
    return logical[len(WORK_PREFIX) :].partition(".")[0]


def work_topic(prefix: str, queue: str, priority: int = 0) -> str:
    """The topic that carries ``queue``'s jobs of ``priority``."""
    return f"{prefix}.jobs.{validate_queue_name(queue)}{_lane_suffix(priority)}"


def lanes(prefix: str, queue: str) -> dict[str, int]:
    """Every lane's topic of ``queue`` and the priority it carries, highest first."""
    return {work_topic(prefix, queue, p): p for p in reversed(PRIORITIES)}


def _parse_work(logical: str) -> tuple[str, int]:
    queue, dot, lane = logical[len(WORK_PREFIX) :].partition(".")
    if not dot:
        return queue, 0
    if not (lane.startswith("p") and lane[1:].isdigit() and 0 < int(lane[1:]) < len(PRIORITIES)):
        raise ValueError(f"unknown logical topic {WORK_PREFIX}{queue}.{lane!r}")
    return queue, int(lane[1:])


def _lane_suffix(priority: int) -> str:
    if priority not in PRIORITIES:
        raise ValueError(f"priority {priority!r} is not one of 0-9")
    return f"{_LANE_MARK}{priority}" if priority else ""


def dlq_topic(prefix: str) -> str:
    """The dead-letter topic shared by every queue."""
    return f"{prefix}.jobs.dlq"


def events_topic(prefix: str) -> str:
    """The topic of lifecycle CloudEvents."""
    return f"{prefix}.events"


def insights_topic(prefix: str) -> str:
    """The topic of analyzer findings."""
    return f"{prefix}.insights"


def resolve(prefix: str, logical: str) -> str:
    """Turn a logical topic name into the deployment's topic name."""
    if logical == DLQ:
        return dlq_topic(prefix)
    if logical == EVENTS:
        return events_topic(prefix)
    if logical == INSIGHTS:
        return insights_topic(prefix)
    if is_work(logical):
        queue, priority = _parse_work(logical)
        return work_topic(prefix, queue, priority)
    raise ValueError(f"unknown logical topic {logical!r}")


def core_topics(prefix: str, queues: Iterable[str]) -> list[str]:
    """Every topic a deployment serving ``queues`` needs, without duplicates, in stable order."""
    work = [work_topic(prefix, q) for q in dict.fromkeys(queues)]
    return [*work, dlq_topic(prefix), events_topic(prefix), insights_topic(prefix)]
