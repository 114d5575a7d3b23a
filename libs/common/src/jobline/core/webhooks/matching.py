"""Which lifecycle events an endpoint receives: its ``event_types`` patterns.

A pattern is an event type (``jobline.job.succeeded``), a prefix ending in ``.*``
(``jobline.job.*``) or ``*`` (everything).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from jobline.core.cloudevent import JOB_EVENT_PREFIX
from jobline.core.errors import JoblineError
from jobline.core.job import JobState

# What a lifecycle event is named after (``jobline.job.<name>``): the job's new state, but
# ``started`` for running (:func:`jobline.core.messages.lifecycle`).
JOB_EVENT_STATES: Final = tuple("started" if s is JobState.RUNNING else s.value for s in JobState)
EVENT_TYPES: Final = tuple(JOB_EVENT_PREFIX + s for s in JOB_EVENT_STATES)
WILDCARDS: Final = ("*", JOB_EVENT_PREFIX + "*")
PATTERNS: Final = (*WILDCARDS, *EVENT_TYPES)


class UnknownEventType(JoblineError):
    """Not an event type or pattern an endpoint can subscribe to."""


def validate(patterns: Iterable[str]) -> list[str]:
    """The patterns, deduplicated in order; :class:`UnknownEventType` for an unknown one."""
    out = list(dict.fromkeys(patterns))
    for pattern in out:
        if pattern not in PATTERNS:
            raise UnknownEventType(f"unknown event type {pattern!r}")
    if not out:
        raise UnknownEventType("at least one event type is required")
    return out


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``patterns`` receives an ``event_type`` event."""
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
