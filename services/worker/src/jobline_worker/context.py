"""What a handler receives besides its payload: who it is, and how to talk back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID, uuid4

from jobline.observe import logs
from jobline.observe.logs import JobLogger

_job_log = logging.getLogger("jobline.job")


class CancelSignal:
    """Set when the handler should stop (cancel requested, lease lost, shutdown, timeout).

    Works from both worlds: async handlers ``await ctx.cancelled.wait()``, blocking handlers
    in the thread pool poll ``ctx.cancelled.is_set()`` (a plain attribute: reading it from
    another thread is safe, and most handlers never look, so nothing is allocated up front).
    """

    __slots__ = ("_event", "_set", "reason")

    def __init__(self) -> None:
        self._set = False
        self._event: asyncio.Event | None = None
        self.reason: str | None = None

    def set(self, reason: str = "cancelled") -> None:
        """Raise the signal (call on the event loop's thread)."""
        if self.reason is None:
            self.reason = reason
        self._set = True
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        """Whether the handler has been asked to stop; safe from any thread."""
        return self._set

    async def wait(self) -> None:
        """Wait until the handler is asked to stop."""
        if self._set:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()


@dataclass(frozen=True, slots=True)
class ChildJob:
    """A job a handler enqueued (:meth:`JobContext.enqueue`), not yet inserted."""

    id: UUID
    type: str
    payload: dict[str, Any]
    queue: str | None = None
    priority: int = 0
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    after: tuple[UUID, ...] = ()  # earlier children it waits for


class ContextBackend(Protocol):
    """What the runtime provides behind a context (the lease keeper; a fake in unit tests)."""

    async def heartbeat(self, job_id: UUID) -> bool:
        """Renew the job's lease now; False if it is lost."""
        ...

    async def progress(self, job_id: UUID, fraction: float, message: str | None) -> None:
        """Store the job's progress report."""
        ...


@dataclass(slots=True)
class JobContext:
    """The job a handler is running and the ways it can report back."""

    job_id: UUID
    type: str
    queue: str
    tenant: str
    attempt: int
    max_attempts: int
    timeout_seconds: float
    backend: ContextBackend
    # W3C trace context of this attempt (its run span with tracing on, else the one the job
    # was submitted with): pass it on to calls the handler makes.
    traceparent: str | None = None
    cancelled: CancelSignal = field(default_factory=CancelSignal)
    # The workflow this job is a node of, and its parents' outcomes by ref: each
    # ``{"state": "succeeded" | "dead" | "cancelled", "result": ..., "error": ...}``.
    workflow_id: UUID | None = None
    parent_results: dict[str, Any] = field(default_factory=dict)
    # Jobs enqueued by the handler: inserted with its success, dropped with anything else.
    children: list[ChildJob] = field(default_factory=list)
    _logger: JobLogger | None = None

    @property
    def idempotency_key(self) -> str:
        """A stable key for the handler's own side effects: the job id, same on every attempt."""
        return str(self.job_id)

    @property
    def logger(self) -> JobLogger:
        """A logger whose records carry the job id, type and attempt."""
        if self._logger is None:
            self._logger = logs.for_job(
                _job_log, str(self.job_id), job_type=self.type, attempt=self.attempt
            )
        return self._logger

    def enqueue(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
        metadata: dict[str, Any] | None = None,
        after: Sequence[UUID] = (),
    ) -> UUID:
        """Enqueue a child job, atomically with this attempt's outcome: it is inserted in the
        transaction that records the handler's success, and never if the handler fails,
        crashes or is stopped. Returns the child's id (final: it is the id it will have).

        ``after``: ids of children enqueued before this one that it waits for; it then runs
        once they all succeeded, with their results in its ``ctx.parent_results`` (by their
        ids), e.g. a callback after a fan-out. The children then form a workflow of their own.
        """
        earlier = {c.id for c in self.children}
        unknown = [str(i) for i in after if i not in earlier]
        if unknown:
            raise ValueError(f"after names no child enqueued before: {', '.join(unknown)}")
        child = ChildJob(
            id=uuid4(),
            type=type,
            payload=payload or {},
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            metadata=metadata or {},
            after=tuple(dict.fromkeys(after)),
        )
        self.children.append(child)
        return child.id

    async def heartbeat(self) -> bool:
        """Renew the lease now; False if the job is no longer this worker's."""
        return await self.backend.heartbeat(self.job_id)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1]; stored in the job's metadata under ``progress``."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("progress fraction must be within [0, 1]")
        await self.backend.progress(self.job_id, fraction, message)
