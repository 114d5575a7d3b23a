"""Example handlers for ``jobline dev``, tests and benchmarks. Their payloads are fixed:

- ``echo`` (any object): returns its payload.
- ``sleep`` ``{"seconds": s}``: sleeps (cancellable; progress once a second), returns
  ``{"slept": s}``.
- ``flaky`` ``{"failures": n}``: fails attempts 1..n, then succeeds.
- ``always-fail`` ``{}`` or ``{"error_bytes": n}``: fails every attempt (with an error message
  of ``n`` bytes: shows that an oversized error is capped and does not stop other jobs).
- ``cpu`` ``{"ms": m}``: busy loop for m ms in the thread pool (stops early when cancelled).
- ``collect`` ``{}``: a workflow's fan-in: returns how many parents it received, how many
  succeeded, and the sum of their results' numbers (a number, or a mapping's values).
- ``send-email`` ``{"to": ..., "subject": ...}`` on queue ``emails``: simulated. The effect is a
  row in ``jobline_examples.email_effects`` keyed by the idempotency key (the job id); a second
  delivery with the same key does not send again, bumps ``deliveries`` and the metric
  ``jobline_examples_email_duplicate_effects_total``, so duplicates are visible to tests.

The table is created lazily (CREATE ... IF NOT EXISTS at worker start-up), not by Jobline's
migrations: it is the example app's own data, like any user app's, not platform schema.

Run with ``jobline-worker --app jobline_worker.examples:worker --queues default,emails``.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from jobline.observe.metrics import REGISTRY, Counter
from jobline.pg.db import Database
from jobline_worker.context import JobContext
from jobline_worker.errors import NonRetryable
from jobline_worker.registry import Worker
from jobline_worker.settings import Settings

worker = Worker()
"""The example app."""

EMAIL_DUPLICATES: Final = Counter(
    "jobline_examples_email_duplicate_effects_total",
    "send-email deliveries whose idempotency key had already sent (the duplicate is not sent).",
    registry=REGISTRY,
)

SCHEMA_SQL: Final = (
    "SELECT pg_advisory_xact_lock(7469321)",  # two workers starting at once: one creates
    "CREATE SCHEMA IF NOT EXISTS jobline_examples",
    """CREATE TABLE IF NOT EXISTS jobline_examples.email_effects (
        idempotency_key text PRIMARY KEY,
        recipient text NOT NULL,
        subject text NOT NULL,
        attempt integer NOT NULL,
        sent_at timestamptz NOT NULL DEFAULT now(),
        deliveries integer NOT NULL DEFAULT 1
    )""",
)
# The effect and its duplicate check in one statement: the primary key decides.
SEND_SQL: Final = (
    "INSERT INTO jobline_examples.email_effects (idempotency_key, recipient, subject, attempt)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (idempotency_key) DO UPDATE"
    " SET deliveries = email_effects.deliveries + 1"
    " RETURNING deliveries"
)

_db: Database | None = None


class Sleep(BaseModel):
    """Payload of ``sleep``."""

    seconds: float = Field(ge=0)


class Flaky(BaseModel):
    """Payload of ``flaky``."""

    failures: int = Field(ge=0)


class Cpu(BaseModel):
    """Payload of ``cpu``."""

    ms: int = Field(ge=0)


class Email(BaseModel):
    """Payload of ``send-email``."""

    model_config = ConfigDict(extra="ignore")
    to: str = Field(min_length=1)
    subject: str


class FlakyFailure(RuntimeError):
    """``flaky`` failing one of its first attempts on purpose."""


class AlwaysFails(RuntimeError):
    """``always-fail`` failing, as it always does."""


@worker.on_startup
async def open_database(settings: Settings) -> None:
    """Open the examples' pool and create the effects table if needed."""
    global _db  # noqa: PLW0603 - one pool per process, opened by the worker's start-up
    _db = await Database(settings, application_name="jobline-examples").open()
    async with _db.transaction() as conn:
        for statement in SCHEMA_SQL:
            await conn.execute(statement)


@worker.on_shutdown
async def close_database(_: Settings) -> None:
    """Close the examples' pool."""
    global _db  # noqa: PLW0603
    if _db is not None:
        await _db.close()
        _db = None


@worker.job("echo")
async def echo(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload."""
    return payload


@worker.job("collect")
async def collect(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sum up the parents' results (a workflow's fan-in callback)."""
    results = [p["result"] for p in ctx.parent_results.values() if p["state"] == "succeeded"]
    total = 0.0
    for result in results:
        values = result.values() if isinstance(result, dict) else [result]
        total += sum(v for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    return {"parents": len(ctx.parent_results), "succeeded": len(results), "sum": total}


@worker.job("sleep", model=Sleep)
async def sleep(ctx: JobContext, payload: Sleep) -> dict[str, float]:
    """Sleep for ``seconds``; cancellable. Reports its progress about once a second."""
    steps = max(1, math.ceil(payload.seconds))
    for step in range(1, steps + 1):
        await asyncio.sleep(payload.seconds / steps)
        if step < steps:  # the last report would be overwritten by the result at once
            await ctx.progress(step / steps, f"slept {step * payload.seconds / steps:g} s")
    return {"slept": payload.seconds}


@worker.job("per-customer", concurrency=5, concurrency_key="customer_id")
async def per_customer(ctx: JobContext, payload: dict[str, Any]) -> dict[str, float]:
    """Sleeps ``seconds``; at most 5 run at once per ``customer_id`` across every worker
    (a job without one is not limited)."""
    seconds = float(payload.get("seconds", 0.1))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@worker.job("flaky", model=Flaky)
async def flaky(ctx: JobContext, payload: Flaky) -> dict[str, int]:
    """Fail the first ``failures`` attempts, then succeed."""
    if ctx.attempt <= payload.failures:
        raise FlakyFailure(f"failing attempt {ctx.attempt} of the first {payload.failures}")
    return {"attempts": ctx.attempt}


class AlwaysFail(BaseModel):
    """Payload of ``always-fail``."""

    error_bytes: int = Field(default=0, ge=0, le=64 * 1024 * 1024)


@worker.job("always-fail", model=AlwaysFail)
async def always_fail(ctx: JobContext, payload: AlwaysFail) -> None:
    """Fail every attempt (with an error message of ``error_bytes`` bytes, if given)."""
    message = f"attempt {ctx.attempt} failed, as always"
    if payload.error_bytes > len(message):
        message += " " + "x" * (payload.error_bytes - len(message) - 1)
    raise AlwaysFails(message)


@worker.job("cpu", model=Cpu)
def cpu(ctx: JobContext, payload: Cpu) -> dict[str, int]:
    """Busy-loop for ``ms`` milliseconds in the thread pool."""
    deadline = time.perf_counter() + payload.ms / 1000
    spins = 0
    while time.perf_counter() < deadline and not ctx.cancelled.is_set():
        spins += 1
    return {"ms": payload.ms, "spins": spins}


@worker.job("send-email", queue="emails", timeout=30, max_attempts=5, model=Email)
async def send_email(ctx: JobContext, payload: Email) -> dict[str, Any]:
    """Simulate sending an email once per idempotency key."""
    if _db is None:
        raise NonRetryable("the examples' database pool is not open")
    async with _db.connection() as conn:
        deliveries = await conn.fetchval(
            SEND_SQL, ctx.idempotency_key, payload.to, payload.subject, ctx.attempt
        )
    if deliveries > 1:
        EMAIL_DUPLICATES.inc()
        ctx.logger.warning("duplicate send-email delivery; not sent again")
    return {"message_id": ctx.idempotency_key, "duplicate": deliveries > 1}
