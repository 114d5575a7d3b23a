"""Shared by the schedule tests (integration, e2e, faults): schedules and their jobs in PG."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.pg import db
from jobline.pg.keystore import ensure_tenant

S = timedelta(seconds=1)


async def new_schedule(
    engine: AsyncEngine, behind: float = 0, *, tenant: str | None = None, **fields: Any
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
        **fields,
        "job_template": json.dumps(fields.get("job_template", {"type": "tick", "payload": {}})),
    }
    async with db.transaction(engine) as conn:
        await ensure_tenant(conn, tenant)
        now = (await conn.execute(text("SELECT now()"))).scalar_one()
        first = now.replace(microsecond=0) - timedelta(seconds=behind)
        sid = (
            await conn.execute(
                text(
                    "INSERT INTO schedules (tenant_id, name, interval_seconds, job_template,"
                    " misfire_policy, catch_up_limit, overlap_policy, paused, next_fire_at)"
                    " VALUES (:tenant, :name, :interval_seconds, CAST(:job_template AS jsonb),"
                    " :misfire_policy, :catch_up_limit, :overlap_policy, :paused, :first)"
                    " RETURNING id"
                ),
                {**values, "tenant": tenant, "name": f"s-{uuid4().hex[:8]}", "first": first},
            )
        ).scalar_one()
    return sid, now


async def fired_jobs(engine: AsyncEngine, sid: UUID) -> list[Any]:
    """(fire_time, created_at, idempotency_key) of a schedule's jobs, oldest fire first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT fire_time, created_at, idempotency_key FROM jobs"
                " WHERE schedule_id = :s ORDER BY fire_time"
            ),
            {"s": sid},
        )
        return list(rows)


async def fire_times(engine: AsyncEngine, sid: UUID) -> list[datetime]:
    return [r.fire_time for r in await fired_jobs(engine, sid)]


async def schedule_row(engine: AsyncEngine, sid: UUID) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT * FROM schedules WHERE id = :s"), {"s": sid})).one()


async def set_paused(engine: AsyncEngine, sids: list[UUID], paused: bool = True) -> None:
    async with db.transaction(engine) as conn:
        await conn.execute(
            text("UPDATE schedules SET paused = :p WHERE id = ANY(:ids)"),
            {"p": paused, "ids": sids},
        )


async def delete_schedules_since(engine: AsyncEngine, since: datetime) -> None:
    """Tests share one database: leave no active schedule for later tests' relays to fire."""
    async with db.transaction(engine) as conn:
        await conn.execute(text("DELETE FROM schedules WHERE created_at >= :t"), {"t": since})


def gaps(times: list[datetime], step: timedelta = S) -> list[tuple[datetime, datetime]]:
    """Consecutive fire times further apart than `step`."""
    return [(a, b) for a, b in itertools.pairwise(times) if b - a != step]
