"""The SDK's front door: a :class:`Worker` is the registry of job handlers an app declares.

```
worker = Worker()

@worker.job("send-email", queue="emails", timeout=30)
async def send_email(ctx: JobContext, payload: Email) -> dict[str, str]: ...
```

Handler options are worker-side limits on top of what the job was submitted with:
``timeout`` caps the job's own timeout, ``max_attempts`` caps its attempt budget and
``backoff``, when given, replaces the job's backoff policy for the delay before a retry.

Flow control across every worker process (jobline.core.limits): ``concurrency=5`` runs at
most 5 at once, ``rate_limit="10/s"`` starts at most 10 in any second; per tenant by default,
per value of a payload field with ``concurrency_key``/``rate_key="customer_id"``, or over all
tenants with ``"*"``. A job over a limit waits in PostgreSQL until its gate frees.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from jobline.core import limits, topics
from jobline.core.backoff import BackoffPolicy
from jobline.core.limits import Limit
from jobline.core.registry import JobTypeRecord
from jobline.core.retries import HandlerLimits
from jobline_worker.errors import AppNotFound, DuplicateHandler

Handler = Callable[..., Any]
Hook = Callable[[Any], Awaitable[None]]
F = TypeVar("F", bound=Handler)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One registered handler and its options."""

    type: str
    func: Handler
    queue: str = "default"
    timeout: float | None = None
    max_attempts: int | None = None
    backoff: BackoffPolicy | None = None
    model: builtins.type[BaseModel] | None = None
    is_async: bool = field(default=False)
    tenants: frozenset[str] | None = None
    # Concurrency and rate limits on starting jobs of this type (jobline.core.limits).
    start_limits: tuple[Limit, ...] = ()

    def record(self) -> JobTypeRecord:
        """What the worker registers at start: the gateway checks submissions against it
        (the payload against the model's JSON Schema)."""
        schema = self.model.model_json_schema(mode="validation") if self.model else None
        return JobTypeRecord(self.type, self.queue, schema, self.tenants)

    @property
    def limits(self) -> HandlerLimits:
        """The caps this handler puts on a job's attempt budget and backoff."""
        return HandlerLimits(self.max_attempts, self.backoff)

    def effective_timeout(self, job_timeout: float) -> float:
        """The timeout an attempt runs under: the job's, capped by the handler's."""
        return min(job_timeout, self.timeout) if self.timeout is not None else job_timeout


class Worker:
    """A registry of job handlers; the runtime serves the queues they name."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []

    def job(
        self,
        type: str,
        *,
        queue: str = "default",
        timeout: float | None = None,
        max_attempts: int | None = None,
        backoff: BackoffPolicy | None = None,
        model: builtins.type[BaseModel] | None = None,
        tenants: Iterable[str] | None = None,
        concurrency: int | None = None,
        concurrency_key: str | None = None,
        rate_limit: str | None = None,
        rate_key: str | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler of job type ``type``.

        ``tenants``, when given, are the only tenants that may submit the type (the gateway
        answers others as if the type did not exist); by default every tenant may.
        """
        topics.validate_queue_name(queue)
        allowed = frozenset(tenants) if tenants is not None else None
        if not type:
            raise ValueError("a job type must be a non-empty string")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        start_limits: list[Limit] = []
        if concurrency is not None:
            start_limits.append(limits.concurrency(concurrency, concurrency_key))
        elif concurrency_key is not None:
            raise ValueError("concurrency_key needs concurrency")
        if rate_limit is not None:
            start_limits.append(limits.rate(rate_limit, rate_key))
        elif rate_key is not None:
            raise ValueError("rate_key needs rate_limit")

        def register(func: F) -> F:
            if type in self._specs:
                raise DuplicateHandler(f"a handler for {type!r} is already registered")
            self._specs[type] = JobSpec(
                type=type,
                func=func,
                queue=queue,
                timeout=timeout,
                max_attempts=max_attempts,
                backoff=backoff,
                model=model,
                is_async=inspect.iscoroutinefunction(func),
                tenants=allowed,
                start_limits=tuple(start_limits),
            )
            return func

        return register

    def on_startup(self, hook: Hook) -> Hook:
        """Run ``await hook(settings)`` before the first job (open pools, create tables)."""
        self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run ``await hook(settings)`` after the last job (close what startup opened)."""
        self.shutdown_hooks.append(hook)
        return hook

    def spec(self, type: str) -> JobSpec | None:
        """The handler registered for ``type``, or None."""
        return self._specs.get(type)

    def queues(self) -> list[str]:
        """The queues the registered handlers use, in registration order."""
        return list(dict.fromkeys(s.queue for s in self._specs.values()))

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def load_app(reference: str) -> Worker:
    """Import ``package.module:attribute`` and return the :class:`Worker` it names."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise AppNotFound(f"--app {reference!r}: use package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppNotFound(f"--app {reference!r}: cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, Worker):
        raise AppNotFound(f"--app {reference!r}: {attribute!r} is not a jobline_worker.Worker")
    return app
