"""Detector checkpoints: the last bucket fed to each series and its detectors' state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection


async def series_with_state(conn: AsyncConnection) -> list[tuple[str, str]]:
    """Series the detection loop has a checkpoint for."""
    rows = await conn.execute(text("SELECT tenant_id, job_type FROM analyzer_detector_state"))
    return [(r.tenant_id, r.job_type) for r in rows]


async def try_lock_series(conn: AsyncConnection, tenant: str, job_type: str) -> bool:
    """Transaction-scoped advisory lock: one replica feeds a series at a time."""
    got = await conn.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"jobline-analyzer:{tenant}:{job_type}"},
    )
    return bool(got)


async def load_state(
    conn: AsyncConnection, tenant: str, job_type: str
) -> tuple[datetime, dict[str, Any]] | None:
    """The series' checkpoint: last bucket fed and the detectors' state."""
    row = (
        await conn.execute(
            text(
                "SELECT last_bucket, state FROM analyzer_detector_state"
                " WHERE tenant_id = :tenant AND job_type = :type"
            ),
            {"tenant": tenant, "type": job_type},
        )
    ).one_or_none()
    return None if row is None else (row.last_bucket, row.state)


_SAVE_STATE = text(
    "INSERT INTO analyzer_detector_state (tenant_id, job_type, last_bucket, state, updated_at)"
    " VALUES (:tenant, :type, :last, :state, now())"
    " ON CONFLICT (tenant_id, job_type) DO UPDATE SET last_bucket = EXCLUDED.last_bucket,"
    " state = EXCLUDED.state, updated_at = now()"
).bindparams(bindparam("state", type_=JSONB))


async def save_state(
    conn: AsyncConnection, tenant: str, job_type: str, last: datetime, state: dict[str, Any]
) -> None:
    """Checkpoint a series after feeding it."""
    await conn.execute(
        _SAVE_STATE, {"tenant": tenant, "type": job_type, "last": last, "state": state}
    )
