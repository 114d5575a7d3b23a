"""Parked work messages in PostgreSQL (the rules: :mod:`jobline.core.fairness`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from jobline.core.fairness import Count, Key, combine
from jobline.pg.db import Conn
from jobline.pg.outbox import OutboxRow
from jobline.pg.queries import Queries

SQL: Final = Queries.load("jobline.pg", "fairness.sql")


@dataclass(frozen=True, slots=True)
class Parked:
    """One work message held back: its job, where it goes, and how it is sent."""

    job_id: UUID
    queue: str
    tenant: str
    priority: int
    topic: str
    payload: bytes
    key: str | None


async def count_queue(conn: Conn, queue: str) -> dict[Key, Count]:
    """Each tenant's waiting work in ``queue`` (queued jobs less parked messages) and parked."""
    queued = await SQL.fetch(conn, "queued_in_queue", queue=queue)
    parked = await SQL.fetch(conn, "parked_in_queue", queue=queue)
    return combine(
        ((queue, r["tenant_id"], r["n"]) for r in queued),
        ((queue, r["tenant_id"], r["n"]) for r in parked),
    )


async def parked_queues(conn: Conn) -> list[str]:
    return [r["queue"] for r in await SQL.fetch(conn, "parked_queues")]


async def park(conn: Conn, messages: Sequence[Parked]) -> None:
    if not messages:
        return
    await SQL.execute(
        conn,
        "park",
        job_ids=[m.job_id for m in messages],
        queues=[m.queue for m in messages],
        tenants=[m.tenant for m in messages],
        priorities=[m.priority for m in messages],
        topics=[m.topic for m in messages],
        payloads=[m.payload for m in messages],
        keys=[m.key for m in messages],
    )


async def try_lock(conn: Conn, queue: str) -> bool:
    return bool(await SQL.fetchval(conn, "release_lock", queue=queue))


async def take(conn: Conn, key: Key, n: int) -> list[OutboxRow]:
    """Delete and return up to ``n`` of ``key``'s parked messages, best first, as outbox rows
    of one message each (to publish in this transaction)."""
    queue, tenant = key
    records = await SQL.fetch(conn, "take_parked", queue=queue, tenant=tenant, n=n)
    ordered = sorted(records, key=lambda r: (-r["priority"], r["id"]))
    now = datetime.now(UTC)
    return [
        OutboxRow(r["id"], r["job_id"], r["key"], now, None, ((r["topic"], bytes(r["payload"])),))
        for r in ordered
    ]
