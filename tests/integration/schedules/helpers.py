"""Shared by the schedule tests (integration, e2e, faults): schedules and their jobs in PG."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from jobline.pg.db import Database
from jobline.pg.keystore import ensure_tenant

S = timedelta(seconds=1)


async def new_schedule(
    db: Database, behind: float = 0, *, tenant: str | None = None, **fields: Any
) -> tuple[UUID, datetime]:
    """An every-second schedule (unless `interval_seconds` says otherwise) whose next_fire_at
    is `behind` seconds before the database's now, on the whole second: as if the relays had
    been down that long. Returns (id, the database's now)."""
    tenant = tenant or f"t-{uuid4().hex[:10]}"
    values = {
        "interval_seconds": 1,
        "misfire_policy": "skip",
        "catch_up_limit": 100,
        "overlap_policy": "allow",
        "paused": False,
        "job_template": {"type": "tick", "payload": {}},
        "end_at": None,
        **fields,
    }
    async with db.transaction() as conn:
        await ensure_tenant(conn, tenant)
        now: datetime = await conn.fetchval("SELECT now()")
        first = now.replace(microsecond=0) - timedelta(seconds=behind)
        sid: UUID = await conn.fetchval(
            "INSERT INTO schedules (tenant_id, name, interval_seconds, job_template,"
            " misfire_policy, catch_up_limit, overlap_policy, paused, next_fire_at, end_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            tenant,
            f"s-{uuid4().hex[:8]}",
            values["interval_seconds"],
            values["job_template"],
            values["misfire_policy"],
            values["catch_up_limit"],
            values["overlap_policy"],
            values["paused"],
            first,
            values["end_at"],
        )
    return sid, now


async def fired_jobs(db: Database, sid: UUID) -> list[asyncpg.Record]:
    """(fire_time, created_at, idempotency_key) of a schedule's jobs, oldest fire first."""
    async with db.connection() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT fire_time, created_at, idempotency_key FROM jobs"
            " WHERE schedule_id = $1 ORDER BY fire_time",
            sid,
        )
    return rows


async def fire_times(db: Database, sid: UUID) -> list[datetime]:
    return [r["fire_time"] for r in await fired_jobs(db, sid)]


async def schedule_row(db: Database, sid: UUID) -> asyncpg.Record:
    async with db.connection() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT * FROM schedules WHERE id = $1", sid
        )
    assert row is not None, f"no schedule {sid}"
    return row


async def set_paused(db: Database, sids: list[UUID], paused: bool = True) -> None:
    async with db.connection() as conn:
        await conn.execute("UPDATE schedules SET paused = $1 WHERE id = ANY($2)", paused, sids)


async def db_now(db: Database) -> datetime:
    """The database's clock (the one that decides what is due)."""
    async with db.connection() as conn:
        now: datetime = await conn.fetchval("SELECT now()")
    return now


async def delete_schedules_since(db: Database, since: datetime) -> None:
    """Tests share one database: leave no active schedule for later tests' relays to fire."""
    async with db.connection() as conn:
        await conn.execute("DELETE FROM schedules WHERE created_at >= $1", since)


def gaps(times: list[datetime], step: timedelta = S) -> list[tuple[datetime, datetime]]:
    """Consecutive fire times further apart than `step`."""
    return [(a, b) for a, b in itertools.pairwise(times) if b - a != step]
