"""Running handlers: one task (or thread) per attempt, its timeout, and stopping it.

An attempt costs one task and one timer: the handler's coroutine *is* the task (a blocking
handler runs in the thread pool), and its done-callback hands the outcome on. Nothing awaits
a handler, so one that ignores its cancellation cannot hold the worker: after a timeout or a
stop request it gets ``CANCEL_WAIT_SECONDS`` (a thread: none, it cannot be interrupted) and
the outcome is reported without it; its eventual end is ignored.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.trace import Span

from jobline.core.job import Job
from jobline_worker import tracing as run_spans
from jobline_worker.context import JobContext
from jobline_worker.outcomes import Outcome, Raised, Returned, Stopped, StopReason, TimedOut
from jobline_worker.registry import JobSpec

# An async handler that ignores cancellation gets this long before its outcome is reported.
CANCEL_WAIT_SECONDS: Final = 2.0


@dataclass(eq=False, slots=True)
class Execution:
    """One running attempt: the job as claimed, its handler, and how it is being stopped."""

    job: Job
    spec: JobSpec
    ctx: JobContext
    started: float = field(default_factory=time.monotonic)
    stop_reason: StopReason | None = None
    timed_out: bool = False
    reported: bool = False
    future: asyncio.Future[Any] | None = None
    timer: asyncio.TimerHandle | None = None
    span: Span | None = None  # the attempt's run span, with tracing on


Report = Callable[[Execution, Outcome], None]


class Executor:
    """Starts handlers and reports each attempt's outcome exactly once to ``report``."""

    def __init__(self, report: Report, threads: int) -> None:
        self._report = report
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="handler")
        self.running: dict[Any, Execution] = {}

    def start(self, execution: Execution, payload: Any) -> None:
        """Run the handler on ``payload`` (already validated against its model)."""
        loop = asyncio.get_running_loop()
        spec, ctx = execution.spec, execution.ctx
        future: asyncio.Future[Any]
        # With tracing on the handler runs with its run span as the current span.
        context = run_spans.handler_context(execution.span) if execution.span else None
        if spec.is_async:
            future = loop.create_task(spec.func(ctx, payload), context=context)
        elif context is not None:
            call = functools.partial(context.run, spec.func, ctx, payload)
            future = loop.run_in_executor(self.pool, call)
        else:
            future = loop.run_in_executor(self.pool, functools.partial(spec.func, ctx, payload))
        execution.future = future
        execution.timer = loop.call_later(ctx.timeout_seconds, self._time_out, execution)
        self.running[execution.job.id] = execution
        future.add_done_callback(functools.partial(self._finished, execution))

    def fail_now(self, execution: Execution, error: BaseException) -> None:
        """Report a failure without running the handler (e.g. its payload is invalid)."""
        self._deliver(execution, Raised(error))

    def stop(self, execution: Execution, reason: StopReason) -> None:
        """Ask the handler to stop (cancel requested, lease lost, shutdown)."""
        if execution.reported or execution.stop_reason is not None:
            return
        execution.stop_reason = reason
        self._interrupt(execution, reason.value)

    def stop_all(self, reason: StopReason) -> None:
        for execution in list(self.running.values()):
            self.stop(execution, reason)

    def _time_out(self, execution: Execution) -> None:
        if execution.reported or execution.stop_reason is not None:
            return
        execution.timed_out = True
        self._interrupt(execution, "timeout")

    def _interrupt(self, execution: Execution, why: str) -> None:
        execution.ctx.cancelled.set(why)
        future = execution.future
        if future is None or future.done():
            return
        if execution.spec.is_async:
            future.cancel()
            loop = asyncio.get_running_loop()
            loop.call_later(CANCEL_WAIT_SECONDS, self._give_up, execution)
        else:
            self._give_up(execution)  # a thread cannot be interrupted: report now

    def _give_up(self, execution: Execution) -> None:
        if not execution.reported:
            self._deliver(execution, self._stopped(execution))

    def _finished(self, execution: Execution, future: asyncio.Future[Any]) -> None:
        if execution.reported:
            if not future.cancelled():
                future.exception()  # retrieved: a late end of an abandoned handler
            return
        if execution.stop_reason is not None or execution.timed_out:
            if not future.cancelled():
                future.exception()
            outcome: Outcome = self._stopped(execution)
        elif future.cancelled():
            outcome = Raised(asyncio.CancelledError("the handler cancelled itself"))
        elif (error := future.exception()) is not None:
            outcome = Raised(error)
        else:
            outcome = Returned(future.result())
        self._deliver(execution, outcome)

    @staticmethod
    def _stopped(execution: Execution) -> Outcome:
        if execution.stop_reason is not None:
            return Stopped(execution.stop_reason)
        return TimedOut(execution.ctx.timeout_seconds)

    def _deliver(self, execution: Execution, outcome: Outcome) -> None:
        execution.reported = True
        if execution.timer is not None:
            execution.timer.cancel()
        self.running.pop(execution.job.id, None)
        if execution.span is not None:
            run_spans.end_run_span(execution.span, outcome)
        self._report(execution, outcome)

    def shutdown(self) -> None:
        # Threads of blocking handlers that ignored ctx.cancelled cannot be interrupted; their
        # jobs were handed back, and we do not wait for them.
        self.pool.shutdown(wait=False, cancel_futures=True)
