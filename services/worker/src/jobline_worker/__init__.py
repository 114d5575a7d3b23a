"""Jobline worker SDK: declare handlers on a :class:`Worker`, run them with ``jobline-worker``."""

from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline_worker.context import CancelSignal, JobContext
from jobline_worker.errors import NonRetryable, Retry, WorkerError
from jobline_worker.registry import JobSpec, Worker

__all__ = [
    "BackoffKind",
    "BackoffPolicy",
    "CancelSignal",
    "JobContext",
    "JobSpec",
    "NonRetryable",
    "Retry",
    "Worker",
    "WorkerError",
]
