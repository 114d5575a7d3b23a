"""Unique keys in the job store: the per-key lock and the jobs holding keys (see
:mod:`jobline.core.unique`; the guarantee is the partial unique index on jobs.unique_key)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from uuid import UUID

from jobline.core.job import Job
from jobline.pg.db import Conn
from jobline.pg.jobrows import job_from_row
from jobline.pg.queries import SQL


async def lock_unique_keys(conn: Conn, tenant_id: str, keys: Sequence[str]) -> None:
    """Take the transaction's advisory lock on each of ``keys`` (give them sorted)."""
    await SQL.fetchrow(conn, "lock_unique_keys", tenant_id=tenant_id, keys=list(keys))


async def unique_holders(conn: Conn, tenant_id: str, keys: Collection[str]) -> dict[str, Job]:
    """The unfinished job holding each of ``keys`` that one holds, locked; by key."""
    rows = await SQL.fetch(conn, "unique_holders", tenant_id=tenant_id, keys=list(keys))
    return {r["unique_key"]: job_from_row(r) for r in rows}


async def note_cancel_reason(conn: Conn, job_ids: Collection[UUID], reason: str) -> None:
    """Record in the jobs' metadata (``cancel_reason``) why they were cancelled."""
    if job_ids:
        await SQL.execute(conn, "note_cancel_reason", ids=list(job_ids), reason=reason)
