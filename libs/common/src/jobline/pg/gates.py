"""Concurrency and rate gates in PostgreSQL (the rules: :mod:`jobline.core.limits`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from jobline.core.limits import Gate, LimitKind, window_start
from jobline.pg.db import Conn
from jobline.pg.queries import Queries

SQL: Final = Queries.load("jobline.pg", "gates.sql")


async def lock(conn: Conn, gates: Sequence[Gate]) -> None:
    """Lock each gate for this transaction, in key order."""
    for key in sorted({g.key for g in gates}):
        await lock_key(conn, key)


async def lock_key(conn: Conn, key: str) -> None:
    await SQL.fetchval(conn, "lock_gate", gate=key)


async def counted(conn: Conn, gate: Gate, now: datetime) -> int:
    """What the gate counts now: its running jobs, or its starts in the window."""
    if gate.limit.kind is LimitKind.CONCURRENCY:
        return int(await SQL.fetchval(conn, "running_in_gate", gate=gate.key))
    since = window_start(gate.limit, now)
    return int(await SQL.fetchval(conn, "starts_in_gate", gate=gate.key, since=since))


async def admit(conn: Conn, job_id: UUID, gates: Sequence[Gate], now: datetime) -> None:
    """Record a start through ``gates`` (the job's claim is in the same transaction)."""
    key = None
    for g in gates:
        if g.limit.kind is LimitKind.RATE:
            since = window_start(g.limit, now)
            await SQL.execute(conn, "record_start", gate=g.key, since=since, started_at=now)
        else:
            key = g.key
    await SQL.execute(conn, "mark_admitted", id=job_id, concurrency_key=key)


async def hold(conn: Conn, job_id: UUID, gate: Gate) -> None:
    """Note that the job waits on ``gate``, and the gate's limit for the relay."""
    await SQL.execute(conn, "mark_held", id=job_id, gate=gate.key)
    await note(conn, gate)


async def note(conn: Conn, gate: Gate) -> None:
    """The gate's limit as this claim saw it, for the relay (written only if it changed)."""
    await SQL.execute(
        conn,
        "note_gate",
        gate=gate.key,
        kind=gate.limit.kind.value,
        max=gate.limit.max,
        period_seconds=gate.limit.period_seconds,
    )


async def held_gates(conn: Conn) -> list[dict[str, Any]]:
    return [dict(r) for r in await SQL.fetch(conn, "held_gates")]


async def held_jobs(conn: Conn, gate: str, n: int) -> list[UUID]:
    return [r["id"] for r in await SQL.fetch(conn, "held_jobs", gate=gate, n=n)]
