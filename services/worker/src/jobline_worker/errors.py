"""Typed errors of the worker SDK and runtime. One root; each docstring is the default message.

Handlers steer their job with two of them: raise :class:`NonRetryable` to send the job to the
dead-letter queue now, or :class:`Retry` to try again after a delay of your choosing. Any
other exception is an ordinary failure, retried by the job's backoff policy.
"""

from __future__ import annotations


class WorkerError(Exception):
    """A Jobline worker error occurred."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class NonRetryable(WorkerError):
    """The job cannot succeed by retrying; it goes to the dead-letter queue now."""


class Retry(WorkerError):
    """Retry the job after ``after`` seconds instead of the backoff policy's delay."""

    def __init__(self, after: float = 0.0, message: str | None = None) -> None:
        if after < 0:
            raise ValueError("Retry(after=...) must be >= 0")
        self.after = float(after)
        super().__init__(message or f"retry requested in {after:g}s")


class PayloadInvalid(NonRetryable):
    """The job's payload does not match the handler's model."""


class ResultTooLarge(NonRetryable):
    """The handler's result is larger than the worker's result size limit."""


class ResultNotSerializable(NonRetryable):
    """The handler's result is not JSON-serialisable."""


class UnknownJobType(NonRetryable):
    """No handler is registered for this job type."""


class HandlerTimeout(WorkerError):
    """The handler ran longer than its timeout."""


class LeaseLost(WorkerError):
    """The job's lease is no longer this worker's (it expired and the job was re-queued)."""


class AppNotFound(WorkerError):
    """The --app reference does not name a Worker (use package.module:attribute)."""


class DuplicateHandler(WorkerError):
    """A handler is already registered for this job type."""
