"""What a handler receives besides its payload: who it is, and how to talk back."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from jobline.observe.logs import JobLogger


class CancelSignal:
    """Set when the handler should stop (cancel requested, lease lost, shutdown, timeout).

    Works from both worlds: async handlers ``await ctx.cancelled.wait()``, blocking handlers
    in the thread pool poll ``ctx.cancelled.is_set()``.
    """

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._event = asyncio.Event()
        self.reason: str | None = None

    def set(self, reason: str = "cancelled") -> None:
        """Raise the signal (call on the event loop's thread)."""
        if self.reason is None:
            self.reason = reason
        self._flag.set()
        self._event.set()

    def is_set(self) -> bool:
        """Whether the handler has been asked to stop; safe from any thread."""
        return self._flag.is_set()

    async def wait(self) -> None:
        """Wait until the handler is asked to stop."""
        await self._event.wait()


class ContextBackend(Protocol):
    """What the runtime provides behind a context (a fake in unit tests)."""

    async def heartbeat(self) -> bool:
        """Renew the lease now; False if it is lost."""
        ...

    async def progress(self, fraction: float, message: str | None) -> None:
        """Store the progress report."""
        ...


@dataclass
class JobContext:
    """The job a handler is running and the ways it can report back."""

    job_id: UUID
    type: str
    queue: str
    tenant: str
    attempt: int
    max_attempts: int
    timeout_seconds: float
    logger: JobLogger
    backend: ContextBackend
    cancelled: CancelSignal = field(default_factory=CancelSignal)

    @property
    def idempotency_key(self) -> str:
        """A stable key for the handler's own side effects: the job id, same on every attempt."""
        return str(self.job_id)

    async def heartbeat(self) -> bool:
        """Renew the lease now; False if the job is no longer this worker's."""
        return await self.backend.heartbeat()

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1]; stored in the job's metadata under ``progress``."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("progress fraction must be within [0, 1]")
        await self.backend.progress(fraction, message)
