"""Webhooks in PostgreSQL: the one module that runs the statements of ``webhooks.sql``.

The gateway manages endpoints and reads the delivery log through it; the relay fans events
out into deliveries, claims due ones and records each attempt's result.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from jobline.core.webhooks import retry
from jobline.core.webhooks.retry import RetryPolicy
from jobline.pg.db import Conn
from jobline.pg.queries import Queries

SQL = Queries.load("jobline.pg", "webhooks.sql")


async def hold_or_release(conn: Conn, endpoint_id: UUID, enabled: bool) -> None:
    """Hold a disabled endpoint's pending deliveries, or make an enabled one's due now."""
    name = "release_deliveries" if enabled else "hold_deliveries"
    await SQL.execute(conn, name, endpoint_id=endpoint_id)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    endpoint_id: UUID
    event_id: str
    event_type: str
    payload: str  # the event's JSON text


async def insert_deliveries(conn: Conn, rows: Sequence[NewDelivery]) -> None:
    """One delivery per (endpoint, event); repeats are ignored."""
    if not rows:
        return
    await SQL.execute(
        conn,
        "insert_deliveries",
        endpoint_ids=[r.endpoint_id for r in rows],
        event_ids=[r.event_id for r in rows],
        event_types=[r.event_type for r in rows],
        payloads=[r.payload for r in rows],
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for one attempt (``attempts`` counts it)."""

    id: UUID
    endpoint_id: UUID
    event_id: str
    event_type: str
    payload: Any
    attempts: int
    url: str
    secrets: tuple[str, ...]  # the current secret first, then a rotated-out one still honoured


async def claim_due(conn: Conn, limit: int, lease_seconds: float) -> list[Claimed]:
    rows = await SQL.fetch(conn, "claim_due", limit=limit, lease_seconds=lease_seconds)
    return [
        Claimed(
            id=r["id"],
            endpoint_id=r["endpoint_id"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            payload=r["payload"],
            attempts=r["attempts"],
            url=r["url"],
            secrets=(r["secret"], *([r["previous_secret"]] if r["previous_secret"] else [])),
        )
        for r in rows
    ]


class Result(StrEnum):
    """What one attempt made of its delivery."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"  # no attempts left
    STALE = "stale"  # the row moved on meanwhile (lease ran out, replayed): nothing written


@dataclass(frozen=True, slots=True)
class Recorded:
    result: Result
    disabled: bool = False  # this failure disabled the endpoint


async def record(
    conn: Conn,
    claimed: Claimed,
    *,
    status_code: int | None,
    error: str | None,
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
) -> Recorded:
    """Write one attempt's result and its consequences, in the caller's transaction: the
    delivery succeeds, waits for its next attempt, or fails for good; a failure for good
    counts against the endpoint, which is disabled (its pending deliveries held) after
    ``policy.disable_after`` in a row. ``error`` is None exactly when the attempt succeeded."""
    key = {"id": claimed.id, "attempts": claimed.attempts, "status_code": status_code}
    # The endpoint's row before the delivery's: one lock order for every writer of both.
    await SQL.fetchval(conn, "lock_endpoint_to_record", id=claimed.endpoint_id)
    if error is None:
        if await SQL.fetchval(conn, "record_success", **key) is None:
            return Recorded(Result.STALE)
        await SQL.execute(conn, "endpoint_succeeded", id=claimed.endpoint_id)
        return Recorded(Result.SUCCEEDED)
    when = retry.next_attempt_at(policy, claimed.attempts, now, rng)
    if when is not None:
        done = await SQL.fetchval(conn, "record_retry", **key, error=error, next_attempt_at=when)
        return Recorded(Result.RETRYING if done is not None else Result.STALE)
    if await SQL.fetchval(conn, "record_failure", **key, error=error) is None:
        return Recorded(Result.STALE)
    counted = await SQL.fetchrow(conn, "endpoint_failed", id=claimed.endpoint_id)
    if counted is None or not counted["enabled"]:
        return Recorded(Result.FAILED)
    if not retry.disables(policy, counted["consecutive_failures"]):
        return Recorded(Result.FAILED)
    reason = (
        f"disabled after {counted['consecutive_failures']} deliveries in a row failed; "
        f"last error: {error}"
    )
    disabled = await SQL.fetchval(conn, "disable_endpoint", id=claimed.endpoint_id, reason=reason)
    if disabled is not None:
        await hold_or_release(conn, claimed.endpoint_id, enabled=False)
    return Recorded(Result.FAILED, disabled=disabled is not None)
